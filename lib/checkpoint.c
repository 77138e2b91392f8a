/* Hugging Face model directories: config.json, preprocessor_config.json and
 * the weights (model.safetensors or a sharded model.safetensors.index.json). */
#include "w2v/model.h"
#include "w2v/safetensors.h"
#include "internal.h"
#include "w2v/fs.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int starts(const char *s, const char *prefix) { return !strncmp(s, prefix, strlen(prefix)); }

/* The name our parameter table uses for a checkpoint's tensor name (to be
 * freed): the family's prefix (wav2vec2., hubert., ...) added for a bare
 * encoder (Wav2Vec2Model, HubertModel, ...), torch >= 2.1's
 * parametrization names mapped back to weight_g / weight_v. */
static char *canonical_name(const w2v_config *c, const char *name)
{
    const char *fam = w2v_config_prefix(c);
    size_t flen = strlen(fam);
    int head = (!strncmp(name, fam, flen) && name[flen] == '.') || starts(name, "projector.") ||
               starts(name, "classifier.") || !strcmp(name, "layer_weights");
    size_t len = (head ? 0 : flen + 1) + strlen(name) + 1;
    char *out = xmalloc(len);
    snprintf(out, len, "%s%s%s", head ? "" : fam, head ? "" : ".", name);
    char *p = strstr(out, "parametrizations.weight.original");
    if (p && (p[32] == '0' || p[32] == '1') && !p[33]) snprintf(p, len - (size_t)(p - out), "weight_%c", p[32] == '0' ? 'g' : 'v');
    return out;
}

/* "d0,d1,...": room for the most dimensions a tensor file may give, each
 * of up to 20 characters and a comma. */
#define SHAPE_CHARS (W2V_ST_MAX_DIMS * 21 + 1)
static const char *shape_text(char out[SHAPE_CHARS], const int64_t *shape, int ndim)
{
    size_t o = 0;
    out[0] = 0;
    for (int d = 0; d < ndim && o < SHAPE_CHARS; d++)
        o += (size_t)snprintf(out + o, SHAPE_CHARS - o, "%s%lld", d ? "," : "", (long long)shape[d]);
    return out;
}

/* Tensors used only by pretraining (or by other heads), as canonical_name
 * names them: under the family's prefix. */
static int other_task(const w2v_config *c, const char *name)
{
    static const char *const parts[] = {"quantizer.", "project_q.", "project_hid.", "lm_head."};
    size_t flen = strlen(w2v_config_prefix(c));
    if (strncmp(name, w2v_config_prefix(c), flen) || name[flen] != '.') return 0;
    for (size_t i = 0; i < sizeof parts / sizeof *parts; i++)
        if (starts(name + flen + 1, parts[i])) return 1;
    return 0;
}

static int load_file(w2v_model *m, const char *path, unsigned char *loaded, int *skipped,
                     char *err, size_t errlen)
{
    w2v_safetensors *st = w2v_st_open(path, err, errlen);
    if (!st) return -1;
    const char *fmt = w2v_st_metadata(st, "format");
    if (fmt && strcmp(fmt, "pt")) lib_note("%s: metadata format is '%s', read as torch's", path, fmt);
    float *block = w2v_model_params(m, NULL);
    for (int i = 0; i < w2v_st_count(st); i++) {
        const w2v_st_tensor *t = w2v_st_tensor_at(st, i);
        char *name = canonical_name(w2v_model_config(m), t->name);
        const w2v_param *p = w2v_model_find_param(m, name);
        if (!p && !other_task(w2v_model_config(m), name))
            lib_note("%s: tensor '%s' is not part of the model: skipped", path, t->name);
        free(name);
        if (!p) {
            (*skipped)++;
            continue;
        }
        int same = t->ndim == p->ndim;
        for (int d = 0; same && d < p->ndim; d++) same = t->shape[d] == p->shape[d];
        if (!same) {
            char want[SHAPE_CHARS], have[SHAPE_CHARS];
            set_error(err, errlen, "%s: tensor '%s' has shape [%s], the config needs [%s]", path, t->name,
                      shape_text(have, t->shape, t->ndim), shape_text(want, p->shape, p->ndim));
            w2v_st_close(st);
            return -1;
        }
        if (w2v_st_to_f32(t, block + p->offset) < 0) {
            set_error(err, errlen, "%s: tensor '%s' has dtype %s, not a float type", path, t->name, w2v_st_dtype_name(t->dtype));
            w2v_st_close(st);
            return -1;
        }
        loaded[p - w2v_model_param(m, 0)] = 1;
    }
    w2v_st_close(st);
    return 0;
}

/* Loads every file an index names (each once). */
static int load_index(w2v_model *m, const char *index, unsigned char *loaded, int *skipped,
                      char *err, size_t errlen)
{
    json_error_t je;
    json_t *root = json_load_file(index, 0, &je), *map = json_object_get(root, "weight_map");
    if (!json_is_object(map)) {
        json_decref(root);
        return set_error(err, errlen, "%s: not a safetensors index (no weight_map)", index);
    }
    char *dir = xstrdup(index);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = 0;
    else strcpy(dir, ".");
    json_t *done = json_object();
    const char *key;
    json_t *val;
    int ret = 0;
    json_object_foreach(map, key, val) {
        const char *file = json_string_value(val);
        if (!file || strchr(file, '/')) {
            ret = set_error(err, errlen, "%s: bad file name for '%s'", index, key);
            break;
        }
        if (json_object_get(done, file)) continue;
        json_object_set_new(done, file, json_true());
        char *path = w2v_path_join(dir, file);
        ret = load_file(m, path, loaded, skipped, err, errlen);
        free(path);
        if (ret < 0) break;
    }
    json_decref(done);
    json_decref(root);
    free(dir);
    return ret;
}

int w2v_model_load_weights(w2v_model *m, const char *path, char *err, size_t errlen)
{
    int n = w2v_model_num_params(m), skipped = 0, ret;
    unsigned char *loaded = xcalloc((size_t)n, 1);
    size_t len = strlen(path);
    if (len > 5 && !strcmp(path + len - 5, ".json")) ret = load_index(m, path, loaded, &skipped, err, errlen);
    else ret = load_file(m, path, loaded, &skipped, err, errlen);
    if (ret == 0) {
        if (skipped) lib_note("%s: %d tensors of other tasks (pretraining, CTC) or unknown were not used", path, skipped);
        /* what from_pretrained initialises anew, with its warning: the head
         * of a pretrained encoder; anything else missing is an error */
        int head = 0;
        for (int i = 0; i < n && ret == 0; i++) {
            const w2v_param *p = w2v_model_param(m, i);
            if (loaded[i]) continue;
            int is_head = starts(p->name, "projector.") || starts(p->name, "classifier.");
            const char *own = strchr(p->name, '.'); /* after the family's prefix */
            if (!is_head && strcmp(p->name, "layer_weights") && !(own && !strcmp(own, ".masked_spec_embed"))) {
                ret = set_error(err, errlen, "%s: missing tensor '%s'", path, p->name);
                break;
            }
            w2v_model_init_param(m, p->name, (uint64_t)i);
            if (is_head) head = 1;
            else lib_note("%s: no '%s': newly initialised", path, p->name);
        }
        if (ret == 0 && head)
            lib_note("%s: no classification head (projector, classifier): newly initialised; train it before use", path);
    }
    free(loaded);
    return ret;
}

w2v_model *w2v_model_load_labels(const char *dir, int nlabels, char *const *labels, char *err,
                                 size_t errlen)
{
    w2v_config c;
    if (w2v_config_load(&c, dir, err, errlen) < 0) return NULL;
    if (labels) w2v_config_set_labels(&c, nlabels, labels);
    w2v_model *m = w2v_model_new(&c);
    w2v_config_free(&c);
    char *st = w2v_path_join(dir, "model.safetensors"), *index = w2v_path_join(dir, "model.safetensors.index.json"),
         *bin = w2v_path_join(dir, "pytorch_model.bin");
    int ret;
    if (w2v_exists(st)) ret = w2v_model_load_weights(m, st, err, errlen);
    else if (w2v_exists(index)) ret = w2v_model_load_weights(m, index, err, errlen);
    else if (w2v_exists(bin))
        ret = set_error(err, errlen, "%s: has only pytorch_model.bin: convert it first (w2v-convert %s)", dir, dir);
    else ret = set_error(err, errlen, "%s: no model.safetensors", dir);
    free(st);
    free(index);
    free(bin);
    if (ret < 0) {
        w2v_model_free(m);
        return NULL;
    }
    return m;
}

w2v_model *w2v_model_load(const char *dir, char *err, size_t errlen)
{
    return w2v_model_load_labels(dir, 0, NULL, err, errlen);
}

/* Each file is written atomically, the weights first and config.json
 * last (w2v_config_save), so that a directory with a config.json holds a
 * whole model even when a run is killed among the files. */
int w2v_model_write_files(const w2v_model *m, const char *dir, char *err, size_t errlen)
{
    w2v_st_writer *w = w2v_st_writer_new();
    w2v_st_add_metadata(w, "format", "pt");
    const float *block = w2v_model_params((w2v_model *)m, NULL);
    for (int i = 0; i < w2v_model_num_params(m); i++) {
        const w2v_param *p = w2v_model_param(m, i);
        w2v_st_add(w, p->name, W2V_ST_F32, p->ndim, p->shape, block + p->offset);
    }
    char *path = w2v_path_join(dir, "model.safetensors");
    int ret = w2v_st_write(w, path, err, errlen);
    free(path);
    w2v_st_writer_free(w);
    return ret < 0 ? -1 : w2v_config_save(w2v_model_config(m), dir, err, errlen);
}

int w2v_model_save(const w2v_model *m, const char *dir, char *err, size_t errlen)
{
    size_t n = strlen(dir) + 32;
    char *tmp = xmalloc(n);
    snprintf(tmp, n, "%s.tmp.%ld", dir, (long)getpid());
    w2v_remove_tree(tmp, NULL, 0);
    int ret = w2v_mkdirs(tmp, err, errlen);
    if (ret == 0) ret = w2v_model_write_files(m, tmp, err, errlen);
    if (ret == 0) ret = w2v_replace_dir(tmp, dir, err, errlen);
    if (ret < 0) w2v_remove_tree(tmp, NULL, 0);
    free(tmp);
    return ret;
}
