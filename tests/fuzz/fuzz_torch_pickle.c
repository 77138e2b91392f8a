/* The pickle of pytorch_model.bin: the input becomes archive/data.pkl in
 * a valid stored zip (libarchive, as tests/unit/test_torchfile.c writes
 * one) beside byteorder, version and the storages archive/data/0 to
 * archive/data/13 with the sizes of tests/data/torch/odd-layouts.bin, so
 * that the pickles of the fixtures find their storages. */
#include "torch_check.h"

#include <archive.h>
#include <archive_entry.h>

static const size_t storage_sizes[] = {48, 12, 192, 8, 6, 24, 8, 4, 2, 3, 3, 4, 0, 8};
#define NSTORAGES (sizeof storage_sizes / sizeof *storage_sizes)
static unsigned char storage_bytes[256];

static void add(struct archive *a, const char *name, const void *data, size_t size)
{
    struct archive_entry *e = archive_entry_new();
    archive_entry_set_pathname(e, name);
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_perm(e, 0644);
    archive_entry_set_size(e, (la_int64_t)size);
    archive_entry_set_mtime(e, 0, 0);
    if (archive_write_header(a, e) != ARCHIVE_OK ||
        (size && archive_write_data(a, data, size) != (la_ssize_t)size)) {
        fprintf(stderr, "fuzz: zip: %s\n", archive_error_string(a));
        abort();
    }
    archive_entry_free(e);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!storage_bytes[1])
        for (size_t i = 0; i < sizeof storage_bytes; i++) storage_bytes[i] = (unsigned char)(i * 37 + 11);
    const char *path = fuzz_path("pickle.bin");
    struct archive *a = archive_write_new();
    archive_write_set_format_zip(a);
    archive_write_zip_set_compression_store(a);
    if (archive_write_open_filename(a, path) != ARCHIVE_OK) {
        fprintf(stderr, "fuzz: %s: %s\n", path, archive_error_string(a));
        abort();
    }
    add(a, "archive/data.pkl", data, size);
    add(a, "archive/byteorder", "little", 6);
    for (size_t i = 0; i < NSTORAGES; i++) {
        char name[64];
        snprintf(name, sizeof name, "archive/data/%zu", i);
        add(a, name, storage_bytes, storage_sizes[i]);
    }
    add(a, "archive/version", "3\n", 2);
    archive_write_free(a);
    torch_check(path);
    return 0;
}
