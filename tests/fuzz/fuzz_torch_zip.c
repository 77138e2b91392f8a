/* pytorch_model.bin as a whole (w2v_torch_open on the input written to a
 * scratch file): the zip reader, the records, the pickle, the tensors
 * against their storages, and the conversion to safetensors. */
#include "torch_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    torch_check(fuzz_write("pytorch_model.bin", data, size));
    return 0;
}
