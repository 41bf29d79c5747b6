/* The contract between vsgx's trusted runtime (this directory) and its untrusted runtime and
 * loader (vsgx.sdk.abi mirrors every number here; a test compares the two).
 *
 * Entry (EENTER, SDM Vol. 3D 38.4.1 / ENCLU[EENTER]): RAX = CSSA, RBX = TCS address, RCX = the
 * address after the caller's ENCLU (where EEXIT returns). The untrusted runtime passes
 *   RDI = command: an ecall index (>= 0), VSGX_CMD_ORET after an ocall, VSGX_CMD_EXCEPTION when
 *         entering on the next SSA frame (CSSA > 0) to handle an exception;
 *   RSI = argument: the ocall's return value for VSGX_CMD_ORET;
 *   RDX = the thread's shared area (struct vsgx_shared, untrusted memory).
 * Exit (EEXIT): RDI = a VSGX_EXIT_* reason, RSI = a status (VSGX_STATUS_*); every other general
 * purpose register and XMM0-15 are cleared, RSP/RBP are the values the caller entered with.
 */
#ifndef VSGX_ABI_H
#define VSGX_ABI_H

/* Commands (RDI at EENTER). */
#define VSGX_CMD_ORET       (-1)
#define VSGX_CMD_EXCEPTION  (-2)

/* Exit reasons (RDI at EEXIT). */
#define VSGX_EXIT_ECALL_RETURN        0   /* RSI = status; shared->ret = the ecall's result */
#define VSGX_EXIT_OCALL               1   /* shared->name/args describe the ocall */
#define VSGX_EXIT_EXCEPTION_HANDLED   2   /* an in-enclave handler fixed it: ERESUME */
#define VSGX_EXIT_EXCEPTION_UNHANDLED 3   /* ERESUME runs the ecall's abort path */
#define VSGX_EXIT_ECALL_ABORTED       4   /* the ecall was abandoned after an exception */

/* Statuses (RSI at EEXIT, shared->status after an ocall). */
#define VSGX_STATUS_SUCCESS           0
#define VSGX_STATUS_INVALID_FUNCTION  1   /* ecall index out of range */
#define VSGX_STATUS_INVALID_STATE     2   /* command not valid in this thread's state */
#define VSGX_STATUS_INVALID_SHARED    3   /* the shared area overlaps the enclave */
#define VSGX_STATUS_RELOCATION        4   /* unsupported relocation in the image */
#define VSGX_STATUS_OCALL_FAILED      5   /* the untrusted side could not serve the ocall */
#define VSGX_STATUS_OCALL_UNKNOWN     6   /* no ocall of that name */

/* struct vsgx_shared: one per thread, outside the enclave. */
#define VSGX_SHARED_ARGS      0x00   /* uint64_t args[6] (ecall in, ocall out) */
#define VSGX_SHARED_RET       0x30   /* uint64_t ret */
#define VSGX_SHARED_STATUS    0x38   /* uint64_t status of the last ocall */
#define VSGX_SHARED_NAME      0x40   /* char name[64]: the ocall's name, NUL-terminated */
#define VSGX_SHARED_SCRATCH   0x80   /* untrusted scratch for ocall buffers */
#define VSGX_SHARED_SIZE      0x10000
#define VSGX_OCALL_NAME_MAX   63
#define VSGX_MAX_ARGS         6

/* The thread data page (the TCS's OFSBASE and OGSBASE point at it; SDM 38.8). The loader
 * writes the layout words, as offsets from the enclave base; the rest starts zero. */
#define VSGX_TD_STACK_TOP      0x00
#define VSGX_TD_STACK_LIMIT    0x08
#define VSGX_TD_SSA            0x10
#define VSGX_TD_SSA_FRAME_SIZE 0x18   /* bytes */
#define VSGX_TD_NSSA           0x20
#define VSGX_TD_TCS            0x28
#define VSGX_TD_HEAP           0x30
#define VSGX_TD_HEAP_SIZE      0x38
#define VSGX_TD_ENCLAVE_SIZE   0x40
#define VSGX_TD_THREAD_INDEX   0x48
#define VSGX_TD_THREAD_COUNT   0x50
#define VSGX_TD_XSTACK_TOP     0x58
#define VSGX_TD_MISCSELECT     0x60
#define VSGX_TD_DYNAMIC        0x68   /* SGX2: start of the range left for EAUG */
#define VSGX_TD_DYNAMIC_SIZE   0x70
#define VSGX_TD_LAYOUT_END     0x78
/* Runtime state. */
#define VSGX_TD_URSP           0x100
#define VSGX_TD_URBP           0x108
#define VSGX_TD_EXIT_ADDR      0x110
#define VSGX_TD_SHARED         0x118
#define VSGX_TD_OCALL_RSP      0x120
#define VSGX_TD_BASE           0x128
#define VSGX_TD_SCRATCH_USED   0x130
#define VSGX_TD_IN_ECALL       0x138

#endif
