/* w2v-convert: a PyTorch pytorch_model.bin to model.safetensors, without Python. */
#include "w2v/cli.h"
#include "w2v/torchfile.h"

#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char usage[] =
    "w2v-convert: turn a PyTorch checkpoint (pytorch_model.bin) into model.safetensors\n"
    "\n"
    "Usage: w2v-convert [options] INPUT [OUTPUT]\n"
    "  INPUT: a pytorch_model.bin (torch.save zip format, torch >= 1.6), or a model\n"
    "  directory holding one; OUTPUT defaults to model.safetensors beside it.\n"
    "  Every tensor keeps its name, shape and dtype; config.json and the other\n"
    "  files of a directory are left as they are.  Only a plain state dict of\n"
    "  tensors is accepted: any other object in the pickle is refused, never run.\n"
    " e.g.: w2v-convert models/wav2vec2-base\n"
    "       w2v-convert --list models/wav2vec2-base/pytorch_model.bin | head\n"
    "       w2v-convert ckpt/pytorch_model.bin /tmp/model.safetensors\n"
    "\n"
    "Options:\n"
    "  --list         print each tensor (name, dtype, shape) and convert nothing\n"
    "  -f, --force    replace an existing OUTPUT (default: refuse)\n"
    "  --quiet        no summary on stderr\n"
    "  -h, --help     this text\n"
    "  --version      print the version\n";

enum { OPT_LIST = 1 };

static int is_dir(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

static char *join(const char *dir, const char *name)
{
    char *p;
    if (asprintf(&p, "%s/%s", dir, name) < 0) w2v_die("out of memory");
    return p;
}

static void list(const w2v_torchfile *tf)
{
    for (int i = 0; i < w2v_torch_count(tf); i++) {
        const w2v_st_tensor *t = w2v_torch_tensor_at(tf, i);
        printf("%s\t%s\t[", t->name, w2v_st_dtype_name(t->dtype));
        for (int d = 0; d < t->ndim; d++) printf("%s%" PRId64, d ? ", " : "", t->shape[d]);
        if (puts("]") == EOF) w2v_write_failed("stdout");
    }
    if (fflush(stdout) != 0) w2v_write_failed("stdout");
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        W2V_COMMON_LONGOPTS,
        {"list", no_argument, 0, OPT_LIST},
        {"force", no_argument, 0, 'f'},
        {"quiet", no_argument, 0, W2V_OPT_QUIET},
        {0, 0, 0, 0},
    };
    int do_list = 0, force = 0, opt;
    w2v_cli_init("w2v-convert", usage, argv);
    while ((opt = getopt_long(argc, argv, "hf", longopts, NULL)) != -1) {
        if (w2v_cli_common(opt, optarg)) continue;
        switch (opt) {
        case OPT_LIST: do_list = 1; break;
        case 'f': force = 1; break;
        }
    }
    if (optind == argc) w2v_usage_error("no INPUT given");
    if (argc - optind > 2) w2v_usage_error("too many arguments");
    if (do_list && argc - optind == 2) w2v_usage_error("--list writes no OUTPUT");

    const char *input_arg = argv[optind];
    char *input, *output;
    if (is_dir(input_arg)) {
        input = join(input_arg, "pytorch_model.bin");
        struct stat sb;
        if (stat(input, &sb) != 0) {
            char *index = join(input_arg, "pytorch_model.bin.index.json");
            if (stat(index, &sb) == 0)
                w2v_die("%s: a sharded checkpoint (pytorch_model.bin.index.json), which is not supported yet", input_arg);
            w2v_die("%s: no pytorch_model.bin in this directory", input_arg);
        }
        output = join(input_arg, "model.safetensors");
    } else {
        input = strdup(input_arg);
        /* model.safetensors beside the input */
        const char *slash = strrchr(input_arg, '/');
        if (slash) {
            char *dir = strndup(input_arg, (size_t)(slash - input_arg));
            output = join(dir, "model.safetensors");
            free(dir);
        } else output = strdup("model.safetensors");
    }
    if (argc - optind == 2) {
        free(output);
        output = is_dir(argv[optind + 1]) ? join(argv[optind + 1], "model.safetensors") : strdup(argv[optind + 1]);
    }
    if (!input || !output) w2v_die("out of memory");

    char err[1024];
    struct stat sb;
    /* Checked before reading, so that a refusal costs nothing. */
    if (!do_list && !force && stat(output, &sb) == 0)
        w2v_die("%s: exists: use --force to replace it", output);
    w2v_torchfile *tf = w2v_torch_open(input, err, sizeof err);
    if (!tf) w2v_die("%s", err);
    if (do_list) list(tf);
    else {
        if (w2v_torch_save_safetensors(tf, output, err, sizeof err) < 0) w2v_die("%s", err);
        size_t bytes = 0;
        for (int i = 0; i < w2v_torch_count(tf); i++) {
            const w2v_st_tensor *t = w2v_torch_tensor_at(tf, i);
            bytes += t->count * w2v_st_dtype_size(t->dtype);
        }
        w2v_note("%s: %d tensors, %.1f MB", output, w2v_torch_count(tf), (double)bytes / 1e6);
    }
    w2v_torch_close(tf);
    free(input);
    free(output);
    return 0;
}
