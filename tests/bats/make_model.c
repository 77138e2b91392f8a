/* Stand-in for w2v-init in the test suites until it lands: a randomly
 * initialised model directory.
 * Usage: make_model DIR PRESET LABELS(a,b,c) SEED ATTENTION_MASK(0|1) */
#include "w2v/config.h"
#include "w2v/model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
    if (argc != 6) return fprintf(stderr, "usage: make_model DIR PRESET LABELS SEED MASK\n"), 2;
    char err[512], *names[64], *list = argv[3];
    int n = 0;
    for (char *tok = strtok(list, ","); tok && n < 64; tok = strtok(NULL, ",")) names[n++] = tok;
    w2v_config c;
    if (w2v_config_preset(&c, argv[2], err, sizeof err) < 0) return fprintf(stderr, "%s\n", err), 1;
    w2v_config_set_labels(&c, n, names);
    c.return_attention_mask = atoi(argv[5]);
    w2v_model *m = w2v_model_new(&c);
    w2v_model_init_weights(m, strtoull(argv[4], NULL, 10));
    if (w2v_model_save(m, argv[1], err, sizeof err) < 0) return fprintf(stderr, "%s\n", err), 1;
    w2v_model_free(m);
    w2v_config_free(&c);
    return 0;
}
