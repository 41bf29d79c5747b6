/* vsgx trusted runtime: the API an enclave written in C uses.
 *
 * Ecalls: define each with VSGX_ECALL; it takes up to six 64-bit integer or pointer
 * arguments and returns a uint64_t. The untrusted runtime calls it by name.
 *
 *     VSGX_ECALL(add) (uint64_t a, uint64_t b) { return a + b; }
 *
 * Pointers an ecall receives point to untrusted memory: copy them in with
 * vsgx_copy_from_untrusted (which refuses ranges that overlap the enclave) before use.
 *
 * Ocalls: vsgx_ocall("name", &ret, args, nargs) runs the untrusted Python callable registered
 * under that name; buffers it needs go in untrusted scratch from vsgx_ocall_alloc.
 */
#ifndef VSGX_ENCLAVE_H
#define VSGX_ENCLAVE_H

#include <stddef.h>
#include <stdint.h>

#include "vsgx/abi.h"
#include "vsgx/arch.h"

typedef uint64_t (*vsgx_ecall_fn)(uint64_t, uint64_t, uint64_t, uint64_t, uint64_t, uint64_t);

/* One entry of the ecall table (section vsgx_ecalls); the untrusted runtime finds the
 * entries by their symbols, __vsgx_ecall_NAME, in table order. */
struct vsgx_ecall_entry {
    vsgx_ecall_fn fn;
};

#define VSGX_ECALL(name)                                                                  \
    uint64_t name();                                                                       \
    __attribute__((used, section("vsgx_ecalls"), aligned(8)))                             \
    const struct vsgx_ecall_entry __vsgx_ecall_##name = {(vsgx_ecall_fn)(void (*)(void))name}; \
    uint64_t name

/* Status codes (abi.h) returned by the runtime's functions; 0 is success. */
int vsgx_ocall(const char *name, uint64_t *ret, const uint64_t *args, size_t nargs);
void *vsgx_ocall_alloc(size_t size);   /* untrusted scratch, valid until the next ocall returns */

/* Bounds checks against this enclave's ELRANGE. */
int vsgx_is_within_enclave(const void *p, size_t size);
int vsgx_is_outside_enclave(const void *p, size_t size);
int vsgx_copy_from_untrusted(void *dst, const void *untrusted_src, size_t size);
int vsgx_copy_to_untrusted(void *untrusted_dst, const void *src, size_t size);
#define VSGX_ERROR_INVALID_PARAMETER 0x10

/* Random bytes from RDRAND; VSGX_ERROR_RANDOM when the hardware had none to give. */
int vsgx_read_rand(void *buf, size_t size);
#define VSGX_ERROR_RANDOM 0x13

/* This thread and the enclave's layout. */
void *vsgx_enclave_base(void);
size_t vsgx_enclave_size(void);
unsigned vsgx_thread_index(void);

/* The heap: a first-fit allocator over the heap the layout reserved, safe across threads. */
void *vsgx_malloc(size_t size);
void *vsgx_calloc(size_t count, size_t size);
void vsgx_free(void *p);

/* In-enclave exception handling (entered on the next SSA frame, SDM 38.5.1). A handler
 * returns VSGX_EXCEPTION_CONTINUE_EXECUTION after fixing the context (cpu->rip etc.), which
 * ERESUME then restores; VSGX_EXCEPTION_CONTINUE_SEARCH passes to the next handler. An
 * exception no handler takes abandons the ecall, and the untrusted caller sees it. */
#define VSGX_EXCEPTION_CONTINUE_SEARCH     0
#define VSGX_EXCEPTION_CONTINUE_EXECUTION (-1)
typedef struct {
    uint32_t vector;       /* exception vector (SSA EXITINFO.VECTOR) */
    uint32_t exit_type;    /* EXITINFO.EXIT_TYPE: 3 hardware, 6 software exception */
    uint32_t error_code;   /* EXINFO.ERRCD (#PF and #GP, when MISCSELECT.EXINFO is set) */
    uint64_t address;      /* EXINFO.MADDR: the faulting address for #PF */
    sgx_gprsgx *cpu;       /* the interrupted context in the SSA: writable */
} vsgx_exception_info;
typedef int (*vsgx_exception_handler)(vsgx_exception_info *info);
int vsgx_register_exception_handler(vsgx_exception_handler handler);   /* up to 8 */

/* ENCLU leaves. */
int vsgx_report(const sgx_targetinfo *target, const uint8_t report_data[64], sgx_report *out);
int vsgx_self_target(sgx_targetinfo *out);   /* this enclave as an EREPORT target */
int vsgx_verify_report(const sgx_report *report);   /* 0 when the MAC checks */
int vsgx_getkey(const sgx_keyrequest *request, uint8_t key[16]);   /* EGETKEY's status */
int vsgx_accept(void *page, uint64_t secinfo_flags);   /* EACCEPT's status */
int vsgx_modpe(void *page, uint64_t secinfo_flags);     /* EMODPE */

/* Sealing: AES-128-GCM under an EGETKEY seal key (SDM 38.17), in the layout of Intel's
 * sgx_sealed_data_t. */
#define VSGX_KEYPOLICY_MRENCLAVE 0x1
#define VSGX_KEYPOLICY_MRSIGNER  0x2
size_t vsgx_sealed_size(size_t aad_size, size_t text_size);
int vsgx_seal(uint16_t key_policy, const void *aad, size_t aad_size, const void *text,
              size_t text_size, void *sealed, size_t sealed_size);
int vsgx_unseal(const void *sealed, size_t sealed_size, void *text, size_t text_size,
                size_t *text_out, void *aad, size_t aad_size, size_t *aad_out);
#define VSGX_ERROR_MAC_MISMATCH 0x11
#define VSGX_ERROR_KEY          0x12

/* Memory helpers (the compiler may call these too). */
void *memcpy(void *dst, const void *src, size_t n);
void *memmove(void *dst, const void *src, size_t n);
void *memset(void *dst, int c, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);
size_t strnlen(const char *s, size_t max);

/* Stop the enclave thread for good (a bug the enclave cannot recover from): ud2. */
__attribute__((noreturn)) void vsgx_abort(void);

#endif
