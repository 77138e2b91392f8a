/* PyTorch checkpoints read without Python: torch.save's zip format
 * (torch >= 1.6) holding a state dict of tensors, as pytorch_model.bin.
 *
 * Only the part of pickle that such a file uses is interpreted, and only
 * whitelisted globals are accepted (collections.OrderedDict, torch's tensor
 * and parameter rebuilders, the torch.*Storage types).  Any other global or
 * opcode is refused with its name: nothing in the file is ever executed. */
#ifndef W2V_TORCHFILE_H
#define W2V_TORCHFILE_H

#include <stddef.h>

#include "w2v/safetensors.h"

typedef struct w2v_torchfile w2v_torchfile;

/* Reads and checks the whole file (every offset, size and stride against its
 * storage); NULL with "PATH: why" in err. */
w2v_torchfile *w2v_torch_open(const char *path, char *err, size_t errlen);
void w2v_torch_close(w2v_torchfile *tf);
int w2v_torch_count(const w2v_torchfile *tf);
/* Tensor i (0 <= i < count) in the state dict's order: contiguous (strided
 * views are copied), in the dtype of its storage; NULL when out of range. */
const w2v_st_tensor *w2v_torch_tensor_at(const w2v_torchfile *tf, int i);

/* Writes every tensor to a safetensors file with metadata {"format": "pt"}
 * (written under a temporary name and renamed).  0, or -1 with the error. */
int w2v_torch_save_safetensors(const w2v_torchfile *tf, const char *path, char *err, size_t errlen);

#endif
