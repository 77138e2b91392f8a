/* ks-cat: print a w2v stream as JSON lines, check it, or take its head. */
#include "w2v/cli.h"
#include "w2v/stream.h"

#include <getopt.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

static const char usage[] =
    "ks-cat: print w2v streams as JSON lines, check them, or take their head\n"
    "\n"
    "Usage: ks-cat [options] [FILE...]      (no FILE or '-' reads stdin)\n"
    " e.g.: ks-extract train.tsv | ks-cat | head\n"
    "       ks-cat --check train.stream\n"
    "       ks-extract train.tsv | ks-cat --head 64 | ks-batch -b 8 > sample.stream\n"
    "\n"
    "Prints the header, then one line per record.  Several FILEs read as their\n"
    "concatenation: one header, which the others must agree with.\n"
    "\n"
    "Options:\n"
    "  --full           print tensor data in full: {\"dtype\", \"shape\", \"data\": [...]}\n"
    "                   (default: dtype, shape, min, max, mean)\n"
    "  --check          validate every record; print record counts only\n"
    "  --head N         write the header and the first N records as a stream\n"
    "  -o, --output F   where --head writes (default: stdout)\n"
    "  -h, --help       this text\n"
    "  --version        print the version\n";

enum { OPT_FULL = 1, OPT_CHECK, OPT_HEAD };

/* Validates a record as what the header says the stream holds. */
static int check_record(w2v_reader *r, char *err, size_t errlen)
{
    if (w2v_reader_header(r)->type == W2V_EXAMPLES) {
        w2v_example ex;
        return w2v_reader_example(r, &ex, err, errlen);
    }
    w2v_batch b;
    return w2v_reader_batch(r, &b, err, errlen);
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        W2V_COMMON_LONGOPTS,
        {"full", no_argument, 0, OPT_FULL},
        {"check", no_argument, 0, OPT_CHECK},
        {"head", required_argument, 0, OPT_HEAD},
        {"output", required_argument, 0, 'o'},
        {0, 0, 0, 0},
    };
    int full = 0, check = 0, opt;
    long head = -1;
    const char *output = NULL;
    w2v_cli_init("ks-cat", usage, argv);
    while ((opt = getopt_long(argc, argv, "ho:", longopts, NULL)) != -1) {
        if (w2v_cli_common(opt, optarg)) continue;
        switch (opt) {
        case OPT_FULL: full = 1; break;
        case OPT_CHECK: check = 1; break;
        case OPT_HEAD: head = w2v_parse_long("--head", optarg, 0, LONG_MAX); break;
        case 'o': output = optarg; break;
        }
    }
    if (check + (head >= 0) > 1) w2v_usage_error("--check and --head exclude each other");
    if (output && head < 0) w2v_usage_error("-o is for --head");

    char *stdin_only[] = {"-"};
    char **files = optind < argc ? argv + optind : stdin_only;
    int nfiles = optind < argc ? argc - optind : 1;
    w2v_output *out = w2v_output_open(head >= 0 ? output : NULL, head >= 0);
    FILE *fp = w2v_output_file(out);
    w2v_writer *w = head >= 0 ? w2v_writer_new(fp) : NULL;
    long written = 0, total = 0;
    const char *out_name = output && strcmp(output, "-") ? output : "stdout";
    w2v_header first = {0};
    char err[512];

    /* Several files read as their concatenation: one header, which the
     * others must agree with, as w2v_reader_next demands inside a file. */
    for (int f = 0; f < nfiles; f++) {
        w2v_reader *r = w2v_reader_open(files[f], err, sizeof err);
        if (!r) w2v_die("%s", err);
        const w2v_header *h = w2v_reader_header(r);
        if (f == 0) {
            w2v_header_init(&first, h->type, h->nlabels, h->labels);
            first.sample_rate = h->sample_rate;
            if (w && w2v_write_record(w, r) < 0) w2v_write_failed(out_name);
            if (!check && !w && (w2v_reader_print_json(r, fp, full) < 0 || fputc('\n', fp) == EOF))
                w2v_write_failed("stdout");
        } else if (!w2v_header_compatible(h, &first))
            w2v_die("%s: record 0 at byte 0: header conflicts with that of %s (type, sample_rate or labels differ)",
                    w2v_input_name(files[f]), w2v_input_name(files[0]));
        long records = 0;
        int ret = 0;
        while ((head < 0 || written < head) && (ret = w2v_reader_next(r, err, sizeof err)) > 0) {
            records++;
            if (check) {
                if (check_record(r, err, sizeof err) < 0) w2v_die("%s", err);
            } else if (w) {
                if (w2v_write_record(w, r) < 0) w2v_write_failed(out_name);
                written++;
            } else {
                if (w2v_reader_print_json(r, fp, full) < 0 || fputc('\n', fp) == EOF) w2v_write_failed("stdout");
            }
        }
        if ((head < 0 || written < head) && ret < 0) w2v_die("%s", err);
        if (check)
            printf("%s: %s stream, %d labels, %ld records\n", w2v_input_name(files[f]),
                   h->type == W2V_EXAMPLES ? "examples" : "batches", h->nlabels, records);
        total += records;
        w2v_reader_close(r);
    }
    if (check && nfiles > 1) printf("total: %ld records\n", total);
    w2v_header_free(&first);
    if (w) w2v_writer_free(w);
    w2v_output_close(out);
    return 0;
}
