/* Checkpoints: both pos-conv namings, bit-exact save/load round trips,
 * the base preset against transformers' config.json, pretraining and bare
 * Wav2Vec2Model checkpoints, sharded indexes, and broken files. */
#include "golden.h"
#include "w2v/base.h"
#include "w2v/model.h"
#include "w2v/safetensors.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char tmpdir[] = "/tmp/w2v-test-ckpt-XXXXXX";
static int notes;
static void count_note(w2v_message_kind kind, const char *msg)
{
    (void)msg;
    notes += kind == W2V_NOTE;
}

static int same_params(w2v_model *a, w2v_model *b)
{
    long na, nb;
    float *pa = w2v_model_params(a, &na), *pb = w2v_model_params(b, &nb);
    return na == nb && !memcmp(pa, pb, (size_t)na * sizeof(float));
}

static void test_namings(void)
{
    for (int c = 0; c < GOLDEN_NCASES; c++) {
        const char *dir = golden_dir(golden_cases[c]);
        if (!dir) return;
        char err[512], path[4200];
        w2v_model *a = w2v_model_load(dir, err, sizeof err), *b = w2v_model_load(dir, err, sizeof err);
        CHECK(a && b, "%s", err);
        if (!a || !b) return;
        /* b: overwrite every weight from the parametrizations file */
        long nb;
        float *pb = w2v_model_params(b, &nb);
        memset(pb, 0, (size_t)nb * sizeof *pb);
        snprintf(path, sizeof path, "%s/model_parametrizations.safetensors", dir);
        CHECK(w2v_model_load_weights(b, path, err, sizeof err) == 0, "%s", err);
        CHECK(same_params(a, b), "%s: weight_g/weight_v and parametrizations.weight.original0/1 load the same", golden_cases[c]);
        /* the golden values land where HF's names say (every tensor: each
         * family's prefix, data2vec-audio's positional stack, WavLM's
         * 4-dimensional gru_rel_pos_const) */
        w2v_safetensors *st = golden_open(dir, "model.safetensors");
        CHECK(w2v_st_count(st) == w2v_model_num_params(a), "%s: %d tensors, %d parameters", golden_cases[c],
              w2v_st_count(st), w2v_model_num_params(a));
        for (int i = 0; i < w2v_model_num_params(a); i++) {
            const w2v_param *p = w2v_model_param(a, i);
            const w2v_st_tensor *t = w2v_st_tensor_at(st, w2v_st_find(st, p->name));
            int same = t && t->ndim == p->ndim;
            for (int d = 0; same && d < p->ndim; d++) same = t->shape[d] == p->shape[d];
            CHECK(same && !memcmp(t->data, w2v_model_params(a, NULL) + p->offset, t->count * 4), "%s: %s in place",
                  golden_cases[c], p->name);
        }
        w2v_st_close(st);

        /* save and load again: bit-exact, labels and config kept */
        snprintf(path, sizeof path, "%s/%s", tmpdir, golden_cases[c]);
        CHECK(w2v_model_save(a, path, err, sizeof err) == 0, "save: %s", err);
        w2v_model *r = w2v_model_load(path, err, sizeof err);
        CHECK(r && same_params(a, r), "%s: save/load round trip is bit-exact", golden_cases[c]);
        if (r) {
            const w2v_config *x = w2v_model_config(a), *y = w2v_model_config(r);
            CHECK(x->num_labels == y->num_labels && !strcmp(x->labels[10], y->labels[10]), "labels kept");
            CHECK(x->do_stable_layer_norm == y->do_stable_layer_norm && x->conv_bias == y->conv_bias &&
                      x->use_weighted_layer_sum == y->use_weighted_layer_sum &&
                      x->return_attention_mask == y->return_attention_mask && x->layer_norm_eps == y->layer_norm_eps,
                  "config kept");
            w2v_model_free(r);
        }
        /* the saved config.json keeps every key of the original with its value */
        char a_path[4400], b_path[4400];
        snprintf(a_path, sizeof a_path, "%s/config.json", dir);
        snprintf(b_path, sizeof b_path, "%s/config.json", path);
        json_t *ja = json_load_file(a_path, 0, NULL), *jb = json_load_file(b_path, 0, NULL);
        const char *key;
        json_t *val;
        json_object_foreach(ja, key, val) CHECK(json_equal(val, json_object_get(jb, key)), "%s: config.json key %s", golden_cases[c], key);
        json_decref(ja);
        json_decref(jb);
        /* weights are written with torch < 2.1's names, which every version loads */
        snprintf(b_path, sizeof b_path, "%s/model.safetensors", path);
        st = w2v_st_open(b_path, err, sizeof err);
        char pos[128];
        const w2v_config *cfg = w2v_model_config(a);
        snprintf(pos, sizeof pos, "%s.encoder.pos_conv_embed.%s", w2v_config_prefix(cfg),
                 cfg->family == W2V_DATA2VEC_AUDIO ? "layers.0.conv.weight" : "conv.weight_v");
        CHECK(st && w2v_st_find(st, pos) >= 0 && !strcmp(w2v_st_metadata(st, "format"), "pt"),
              "%s: saved names and metadata", golden_cases[c]);
        w2v_st_close(st);
        w2v_model_free(a);
        w2v_model_free(b);
    }
}

static void test_base_preset(void)
{
    char path[4096], err[512];
    snprintf(path, sizeof path, "%s/golden/base-full-config.json", unit_shared_dir());
    json_t *want = json_load_file(path, 0, NULL);
    if (!want) {
        printf("SKIP: no %s\n", path);
        return;
    }
    w2v_config c;
    CHECK(w2v_config_preset(&c, "base", err, sizeof err) == 0, "%s", err);
    char *ks[] = {"yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go", "_silence_", "_unknown_"};
    w2v_config_set_labels(&c, 12, ks);
    snprintf(path, sizeof path, "%s/base", tmpdir);
    mkdir(path, 0777);
    CHECK(w2v_config_save(&c, path, err, sizeof err) == 0, "%s", err);
    snprintf(path, sizeof path, "%s/base/config.json", tmpdir);
    json_t *got = json_load_file(path, 0, NULL);
    const char *key;
    json_t *val;
    json_object_foreach(want, key, val) CHECK(json_equal(val, json_object_get(got, key)), "base preset: key %s differs", key);
    json_object_foreach(got, key, val) CHECK(json_object_get(want, key) != NULL, "base preset: extra key %s", key);
    json_decref(want);
    json_decref(got);
    w2v_config_free(&c);
}

/* A pretraining-style checkpoint of a family: bare encoder names
 * (Wav2Vec2Model, HubertModel, ...), quantizer and project_q tensors, no
 * head. */
static void test_pretraining(const char *model_type)
{
    char err[512], dir[4096], path[4200], json[512];
    w2v_config c;
    snprintf(json, sizeof json,
             "{\"model_type\":\"%s\",\"conv_dim\":[16,16,16],\"conv_kernel\":[10,3,3],\"conv_stride\":[5,2,2],"
             "\"hidden_size\":32,\"num_hidden_layers\":2,\"num_attention_heads\":4,\"intermediate_size\":64,"
             "\"num_conv_pos_embedding_groups\":4,\"classifier_proj_size\":8}", model_type);
    CHECK(w2v_config_parse(&c, json, NULL, err, sizeof err) == 0, "%s", err);
    const char *pre = w2v_config_prefix(&c);
    size_t plen = strlen(pre);
    w2v_model *m = w2v_model_new(&c);
    w2v_model_init_weights(m, 3);
    snprintf(dir, sizeof dir, "%s/pretrain-%s", tmpdir, model_type);
    mkdir(dir, 0777);
    CHECK(w2v_config_save(&c, dir, err, sizeof err) == 0, "%s", err);
    w2v_st_writer *w = w2v_st_writer_new();
    w2v_st_add_metadata(w, "format", "pt");
    static float q[8 * 4];
    int64_t qs[2] = {8, 4};
    w2v_st_add(w, "quantizer.codevectors", W2V_ST_F32, 2, qs, q);
    w2v_st_add(w, "project_q.weight", W2V_ST_F32, 2, qs, q);
    char names[64][128];
    int k = 0;
    for (int i = 0; i < w2v_model_num_params(m); i++) {
        const w2v_param *p = w2v_model_param(m, i);
        if (strncmp(p->name, pre, plen) || p->name[plen] != '.') continue; /* no head */
        snprintf(names[k], sizeof names[k], "%s", p->name + plen + 1);
        w2v_st_add(w, names[k++], W2V_ST_F32, p->ndim, p->shape, w2v_model_params(m, NULL) + p->offset);
    }
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    CHECK(w2v_st_write(w, path, err, sizeof err) == 0, "%s", err);
    w2v_st_writer_free(w);
    notes = 0;
    char *labels[4] = {"w", "x", "y", "z"};
    w2v_set_message_fn(count_note);
    w2v_model *r = w2v_model_load_labels(dir, 4, labels, err, sizeof err);
    w2v_set_message_fn(NULL);
    CHECK(r != NULL, "pretraining checkpoint: %s", err);
    if (r) {
        CHECK(notes >= 2, "notes on skipped tensors and the new head (%d)", notes);
        snprintf(path, sizeof path, "%s.encoder.layers.1.attention.q_proj.weight", pre);
        const w2v_param *p = w2v_model_find_param(r, path);
        CHECK(!memcmp(w2v_model_params(r, NULL) + p->offset, w2v_model_params(m, NULL) + p->offset, (size_t)p->size * 4),
              "%s: bare names get the %s. prefix", model_type, pre);
        p = w2v_model_find_param(r, "classifier.weight");
        CHECK(p->shape[0] == 4, "the new head has the new labels");
        double ss = 0;
        for (long j = 0; j < p->size; j++) ss += (double)w2v_model_params(r, NULL)[p->offset + j] * w2v_model_params(r, NULL)[p->offset + j];
        double std = sqrt(ss / p->size);
        CHECK(std > 0.01 && std < 0.03, "the new classifier is drawn with std initializer_range (%.4f)", std);
        w2v_model_free(r);
    }
    w2v_model_free(m);
    w2v_config_free(&c);
}

static void test_index_and_errors(void)
{
    const char *dir = golden_dir("base-tiny");
    if (!dir) return;
    char err[512], path[4200], src[16384];
    /* an index naming the one file */
    snprintf(path, sizeof path, "%s/shard", tmpdir);
    mkdir(path, 0777);
    snprintf(src, sizeof src, "cp %s/config.json %s/model.safetensors %s/", dir, dir, path);
    CHECK(system(src) == 0, "copy");
    snprintf(src, sizeof src, "cd %s && mv model.safetensors model-00001-of-00001.safetensors && "
                              "printf '{\"metadata\": {}, \"weight_map\": {\"classifier.bias\": \"model-00001-of-00001.safetensors\"}}' "
                              "> model.safetensors.index.json", path);
    CHECK(system(src) == 0, "index");
    w2v_model *a = w2v_model_load(dir, err, sizeof err), *b = w2v_model_load(path, err, sizeof err);
    CHECK(b != NULL && same_params(a, b), "sharded index loads: %s", err);
    w2v_model_free(b);
    w2v_model_free(a);
    /* broken files: a clear error each, no crash */
    snprintf(path, sizeof path, "%s/broken.safetensors", tmpdir);
    /* raw prefixes, then well-framed headers whose content is wrong */
    static const struct { const char *bytes; size_t len; } raw[] = {
        {"", 0}, {"\x08\0\0\0\0\0\0\0{}", 10}, {"\xff\xff\xff\xff\0\0\0\0{}", 10}};
    static const struct { const char *json; size_t data; } framed[] = {
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 0}, /* data missing */
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8}, /* shape != size */
    };
    size_t nraw = sizeof raw / sizeof *raw, nframed = sizeof framed / sizeof *framed;
    for (size_t i = 0; i < nraw + nframed; i++) {
        FILE *fp = fopen(path, "wb");
        if (i < nraw) {
            fwrite(raw[i].bytes, 1, raw[i].len, fp);
        } else {
            const char *json = framed[i - nraw].json;
            unsigned char n8[8] = {64};
            fwrite(n8, 1, 8, fp);
            fprintf(fp, "%-64s", json);
            for (size_t k = 0; k < framed[i - nraw].data; k++) fputc(0, fp);
        }
        fclose(fp);
        w2v_safetensors *st = w2v_st_open(path, err, sizeof err);
        CHECK(st == NULL && strstr(err, "broken.safetensors"), "broken file %zu refused (%s)", i, err);
        w2v_st_close(st);
    }
    /* only pytorch_model.bin: point to w2v-convert */
    snprintf(path, sizeof path, "%s/bin", tmpdir);
    mkdir(path, 0777);
    snprintf(src, sizeof src, "cp %s/config.json %s/ && touch %s/pytorch_model.bin", dir, path, path);
    CHECK(system(src) == 0, "copy");
    CHECK(w2v_model_load(path, err, sizeof err) == NULL && strstr(err, "w2v-convert"), "%s", err);
}

/* Files crafted to break the loader: each refused with a clear error,
 * nothing written out of bounds (the sanitizer build watches). */
static void test_hostile_files(void)
{
    char err[1024], path[4200];
    w2v_config cfg;
    CHECK(w2v_config_preset(&cfg, "tiny", err, sizeof err) == 0, "%s", err);
    w2v_model *m = w2v_model_new(&cfg);
    /* a zero-element tensor with the most dimensions of the longest numbers:
     * the shape-mismatch message must hold it all */
    snprintf(path, sizeof path, "%s/long-shape.safetensors", tmpdir);
    int64_t shape[W2V_ST_MAX_DIMS] = {0};
    for (int d = 1; d < W2V_ST_MAX_DIMS; d++) shape[d] = 1099511627776; /* 2^40, the largest dimension taken */
    w2v_st_writer *w = w2v_st_writer_new();
    w2v_st_add(w, "wav2vec2.encoder.layers.0.attention.k_proj.weight", W2V_ST_F32, W2V_ST_MAX_DIMS, shape, NULL);
    CHECK(w2v_st_write(w, path, err, sizeof err) == 0, "%s", err);
    w2v_st_writer_free(w);
    CHECK(w2v_model_load_weights(m, path, err, sizeof err) < 0 &&
              strstr(err, "has shape [0,1099511627776,1099511627776,1099511627776,1099511627776,1099511627776,"
                          "1099511627776,1099511627776], the config needs ["),
          "long shape refused whole: %s", err);
    w2v_model_free(m);

    /* dimensions whose product wraps around 2^64 to 4 elements */
    snprintf(path, sizeof path, "%s/wrap.safetensors", tmpdir);
    FILE *fp = fopen(path, "wb");
    const char *json = "{\"a\":{\"dtype\":\"F32\",\"shape\":[968973220,19037413721],\"data_offsets\":[0,16]}}";
    unsigned char n8[8] = {128};
    fwrite(n8, 1, 8, fp);
    fprintf(fp, "%-128s", json);
    for (int k = 0; k < 16; k++) fputc(0, fp);
    fclose(fp);
    w2v_safetensors *st = w2v_st_open(path, err, sizeof err);
    CHECK(st == NULL && strstr(err, "'a': too large"), "a wrapping element count is refused: %s",
          st ? "accepted" : err);
    w2v_st_close(st);

    /* more layers in a weighted sum than the old fixed arrays held */
    cfg.num_hidden_layers = 300;
    cfg.use_weighted_layer_sum = 1;
    m = w2v_model_new(&cfg);
    w2v_model_init_weights(m, 3);
    float x[2 * 800];
    int64_t lengths[2] = {800, 800}, labels[2] = {0, 1};
    for (int i = 0; i < 2 * 800; i++) x[i] = sinf(0.05f * (float)i);
    w2v_input in = {.B = 2, .T = 800, .x = x, .lengths = lengths, .labels = labels};
    w2v_run run = {1, 1, 0, 0};
    float loss = w2v_model_forward(m, &in, &run, NULL, err, sizeof err);
    w2v_model_backward(m, 1.0f);
    const w2v_param *lw = w2v_model_find_param(m, "layer_weights");
    CHECK(lw && lw->size == 301, "301 layer weights");
    const float *g = w2v_model_grads(m, NULL);
    CHECK(isfinite(loss) && lw && g[lw->offset + 300] != 0, "300 weighted layers: loss %g, last layer's weight gradient %g",
          loss, lw ? g[lw->offset + 300] : 0);
    w2v_model_free(m);
    w2v_config_free(&cfg);
}

/* Tensors made as the file is written (w2v_st_add_fill, how a split
 * optimizer state is gathered): the same file as from memory; every fill
 * runs once, in file order, even when the file cannot be made or none is
 * asked for (fills that are MPI collectives keep the ranks in step). */
typedef struct {
    const float *src;
    int n, *calls, *order;
} filler;

static void fill_copy(void *ctx, void *dst)
{
    filler *f = ctx;
    if (dst) memcpy(dst, f->src, (size_t)f->n * sizeof *f->src);
    f->order[(*f->calls)++] = (int)f->src[0];
}

static void test_filled_tensors(void)
{
    char err[512], a[4200], b[4200];
    float x[3] = {1, 2, 3}, y[5] = {0, 5, 6, 7, 8};
    int64_t sx = 3, sy = 5;
    int calls = 0, order[8];
    filler fx = {x, 3, &calls, order}, fy = {y, 5, &calls, order};
    snprintf(a, sizeof a, "%s/memory.safetensors", tmpdir);
    snprintf(b, sizeof b, "%s/filled.safetensors", tmpdir);
    const char *paths[] = {a, b, "/nonexistent/dir/f.safetensors", NULL};
    for (int k = 0; k < 4; k++) {
        w2v_st_writer *w = w2v_st_writer_new();
        if (k == 0) {
            w2v_st_add(w, "b", W2V_ST_F32, 1, &sx, x);
            w2v_st_add(w, "a", W2V_ST_F32, 1, &sy, y);
        } else {
            w2v_st_add_fill(w, "b", W2V_ST_F32, 1, &sx, fill_copy, &fx);
            w2v_st_add_fill(w, "a", W2V_ST_F32, 1, &sy, fill_copy, &fy);
        }
        calls = 0;
        int ret = w2v_st_write(w, paths[k], err, sizeof err);
        w2v_st_writer_free(w);
        CHECK(k == 2 ? ret < 0 && strstr(err, "/nonexistent/dir/f.safetensors") : ret == 0, "write %d: %s", k, err);
        /* file order: by name, so "a" (y) first */
        CHECK(k == 0 || (calls == 2 && order[0] == 0 && order[1] == 1), "write %d: %d fills, in file order", k, calls);
    }
    char cmd[9000];
    snprintf(cmd, sizeof cmd, "cmp -s %s %s", a, b);
    CHECK(system(cmd) == 0, "a filled file is the file from memory");
}

int main(void)
{
    CHECK(mkdtemp(tmpdir) != NULL, "mkdtemp");
    test_namings();
    test_base_preset();
    test_pretraining("wav2vec2");
    test_pretraining("hubert");
    test_pretraining("data2vec-audio");
    test_pretraining("wavlm");
    test_index_and_errors();
    test_hostile_files();
    test_filled_tensors();
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (system(cmd) != 0) return 1;
    return unit_finish("test_checkpoint");
}
