/* The trusted runtime's C half: first-entry self-relocation, ecall dispatch, ocalls, and the
 * exception dispatcher entered on the next SSA frame (SDM Vol. 3D 38.5, 38.9). entry.S does
 * the register-level work; the contract with the untrusted runtime is in abi.h. */
#include "vsgx/enclave.h"

#define R_X86_64_RELATIVE 8

#define DT_NULL 0
#define DT_RELA 7
#define DT_RELASZ 8

typedef struct {
    uint64_t r_offset;
    uint64_t r_info;
    int64_t r_addend;
} elf64_rela;

typedef struct {
    int64_t d_tag;
    uint64_t d_val;
} elf64_dyn;

/* Defined by the linker script and the linker; hidden, so every reference is PC-relative and
 * works before the relocations are applied. */
#define LINKER_SYMBOL extern __attribute__((visibility("hidden")))
LINKER_SYMBOL const uint8_t __vsgx_base[];
LINKER_SYMBOL const elf64_dyn _DYNAMIC[];
LINKER_SYMBOL const struct vsgx_ecall_entry __vsgx_ecalls_start[];
LINKER_SYMBOL const struct vsgx_ecall_entry __vsgx_ecalls_end[];

uint64_t vsgx_trts_ocall_switch(void);
void vsgx_trts_abort_ecall(void);
uint64_t vsgx_trts_ecall(uint64_t index, uint8_t *shared);
uint64_t vsgx_trts_exception(uint64_t cssa, uint8_t *shared);

static inline uint64_t td_get(unsigned offset)
{
    uint64_t value;
    __asm__ volatile("mov %%gs:(%1), %0" : "=r"(value) : "r"((uint64_t)offset));
    return value;
}

static inline void td_set(unsigned offset, uint64_t value)
{
    __asm__ volatile("mov %0, %%gs:(%1)" : : "r"(value), "r"((uint64_t)offset) : "memory");
}

void *vsgx_enclave_base(void) { return (void *)__vsgx_base; }
size_t vsgx_enclave_size(void) { return td_get(VSGX_TD_ENCLAVE_SIZE); }
unsigned vsgx_thread_index(void) { return (unsigned)td_get(VSGX_TD_THREAD_INDEX); }

int vsgx_is_within_enclave(const void *p, size_t size)
{
    uint64_t start = (uint64_t)p, base = (uint64_t)__vsgx_base;
    if (start + size < start)
        return 0;
    return start >= base && start + size <= base + vsgx_enclave_size();
}

int vsgx_is_outside_enclave(const void *p, size_t size)
{
    uint64_t start = (uint64_t)p, base = (uint64_t)__vsgx_base;
    if (start + size < start)
        return 0;
    return start + size <= base || start >= base + vsgx_enclave_size();
}

int vsgx_copy_from_untrusted(void *dst, const void *untrusted_src, size_t size)
{
    if (!vsgx_is_outside_enclave(untrusted_src, size) || !vsgx_is_within_enclave(dst, size))
        return VSGX_ERROR_INVALID_PARAMETER;
    memcpy(dst, untrusted_src, size);
    return 0;
}

int vsgx_copy_to_untrusted(void *untrusted_dst, const void *src, size_t size)
{
    if (!vsgx_is_outside_enclave(untrusted_dst, size))
        return VSGX_ERROR_INVALID_PARAMETER;
    memcpy(untrusted_dst, src, size);
    return 0;
}

/* Apply the image's R_X86_64_RELATIVE relocations once, whichever thread enters first: the
 * enclave is measured as linked (at address 0) and runs wherever ELRANGE was placed. The
 * relocations are found through the dynamic section (DT_RELA, DT_RELASZ), as ld.so does. */
static volatile int relocation_state;   /* 0 not done, 1 in progress, 2 done, 3 failed */

static int relocate(void)
{
    int expected = 0;
    if (__atomic_load_n(&relocation_state, __ATOMIC_ACQUIRE) == 2)
        return 0;
    if (__atomic_compare_exchange_n(&relocation_state, &expected, 1, 0, __ATOMIC_ACQ_REL,
                                    __ATOMIC_ACQUIRE)) {
        uint64_t base = (uint64_t)__vsgx_base, rela = 0, relasz = 0;
        for (const elf64_dyn *d = _DYNAMIC; d->d_tag != DT_NULL; d++) {
            if (d->d_tag == DT_RELA)
                rela = d->d_val;
            else if (d->d_tag == DT_RELASZ)
                relasz = d->d_val;
        }
        const elf64_rela *first = (const elf64_rela *)(base + rela);
        const elf64_rela *last = (const elf64_rela *)(base + rela + relasz);
        int state = 2;
        for (const elf64_rela *r = first; rela && r < last; r++) {
            if ((uint32_t)r->r_info != R_X86_64_RELATIVE) {
                state = 3;
                break;
            }
            *(uint64_t *)(base + r->r_offset) = base + (uint64_t)r->r_addend;
        }
        __atomic_store_n(&relocation_state, state, __ATOMIC_RELEASE);
    }
    while (__atomic_load_n(&relocation_state, __ATOMIC_ACQUIRE) == 1)
        __builtin_ia32_pause();
    return __atomic_load_n(&relocation_state, __ATOMIC_ACQUIRE) == 2 ? 0
                                                                       : VSGX_STATUS_RELOCATION;
}

uint64_t vsgx_trts_ecall(uint64_t index, uint8_t *shared)
{
    if (!vsgx_is_outside_enclave(shared, VSGX_SHARED_SIZE))
        return VSGX_STATUS_INVALID_SHARED;
    int status = relocate();
    if (status)
        return (uint64_t)status;
    uint64_t count = (uint64_t)(__vsgx_ecalls_end - __vsgx_ecalls_start);
    if (index >= count)
        return VSGX_STATUS_INVALID_FUNCTION;
    uint64_t args[VSGX_MAX_ARGS];
    memcpy(args, shared + VSGX_SHARED_ARGS, sizeof args);
    td_set(VSGX_TD_SHARED, (uint64_t)shared);
    td_set(VSGX_TD_SCRATCH_USED, 0);
    td_set(VSGX_TD_IN_ECALL, 1);
    uint64_t ret = __vsgx_ecalls_start[index].fn(args[0], args[1], args[2], args[3], args[4],
                                                  args[5]);
    td_set(VSGX_TD_IN_ECALL, 0);
    memcpy(shared + VSGX_SHARED_RET, &ret, sizeof ret);
    return VSGX_STATUS_SUCCESS;
}

void *vsgx_ocall_alloc(size_t size)
{
    uint8_t *shared = (uint8_t *)td_get(VSGX_TD_SHARED);
    uint64_t used = td_get(VSGX_TD_SCRATCH_USED);
    size_t room = VSGX_SHARED_SIZE - VSGX_SHARED_SCRATCH;
    size = (size + 15) & ~(size_t)15;
    if (!shared || size > room - used)
        return 0;
    td_set(VSGX_TD_SCRATCH_USED, used + size);
    return shared + VSGX_SHARED_SCRATCH + used;
}

int vsgx_ocall(const char *name, uint64_t *ret, const uint64_t *args, size_t nargs)
{
    uint8_t *shared = (uint8_t *)td_get(VSGX_TD_SHARED);
    size_t length = strnlen(name, VSGX_OCALL_NAME_MAX + 1);
    if (!td_get(VSGX_TD_IN_ECALL) || !shared)
        return VSGX_STATUS_INVALID_STATE;
    if (nargs > VSGX_MAX_ARGS || length > VSGX_OCALL_NAME_MAX)
        return VSGX_ERROR_INVALID_PARAMETER;
    uint64_t out[VSGX_MAX_ARGS] = {0};
    for (size_t i = 0; i < nargs; i++)
        out[i] = args[i];
    memcpy(shared + VSGX_SHARED_ARGS, out, sizeof out);
    memset(shared + VSGX_SHARED_NAME, 0, VSGX_OCALL_NAME_MAX + 1);
    memcpy(shared + VSGX_SHARED_NAME, name, length);
    uint64_t value = vsgx_trts_ocall_switch();
    /* Back in: the untrusted side may have swapped the shared area for another; use the
     * one this ecall started with, and take the status from it. */
    uint64_t status;
    memcpy(&status, shared + VSGX_SHARED_STATUS, sizeof status);
    td_set(VSGX_TD_SCRATCH_USED, 0);
    if (status)
        return status == VSGX_STATUS_OCALL_UNKNOWN ? VSGX_STATUS_OCALL_UNKNOWN
                                                   : VSGX_STATUS_OCALL_FAILED;
    if (ret)
        *ret = value;
    return 0;
}

#define MAX_HANDLERS 8
static vsgx_exception_handler handlers[MAX_HANDLERS];
static volatile int handler_lock;

int vsgx_register_exception_handler(vsgx_exception_handler handler)
{
    int status = VSGX_ERROR_INVALID_PARAMETER;
    while (__atomic_exchange_n(&handler_lock, 1, __ATOMIC_ACQUIRE))
        __builtin_ia32_pause();
    for (int i = 0; i < MAX_HANDLERS; i++) {
        if (!handlers[i]) {
            handlers[i] = handler;
            status = 0;
            break;
        }
    }
    __atomic_store_n(&handler_lock, 0, __ATOMIC_RELEASE);
    return status;
}

#define EXITINFO_VALID (1u << 31)
#define MISC_EXINFO 1u

/* Entered with CSSA > 0: the context an AEX saved is in SSA frame CSSA - 1. Offer it to the
 * registered handlers; if none takes it, make ERESUME resume at vsgx_trts_abort_ecall on a
 * fresh stack so the thread leaves the ecall cleanly (CSSA drops back to 0). */
uint64_t vsgx_trts_exception(uint64_t cssa, uint8_t *shared)
{
    (void)shared;
    uint8_t *base = (uint8_t *)__vsgx_base;
    uint64_t frame_size = td_get(VSGX_TD_SSA_FRAME_SIZE);
    uint8_t *frame = base + td_get(VSGX_TD_SSA) + (cssa - 1) * frame_size;
    sgx_gprsgx *gpr = (sgx_gprsgx *)(frame + frame_size - sizeof(sgx_gprsgx));
    if (cssa > td_get(VSGX_TD_NSSA) || !td_get(VSGX_TD_IN_ECALL))
        return VSGX_EXIT_EXCEPTION_UNHANDLED;
    if (gpr->exitinfo & EXITINFO_VALID) {
        vsgx_exception_info info = {
            .vector = gpr->exitinfo & 0xff,
            .exit_type = (gpr->exitinfo >> 8) & 0x7,
            .cpu = gpr,
        };
        if (td_get(VSGX_TD_MISCSELECT) & MISC_EXINFO) {
            const sgx_exinfo *exinfo = (const sgx_exinfo *)((uint8_t *)gpr - sizeof(sgx_exinfo));
            info.error_code = exinfo->errcd;
            info.address = exinfo->maddr;
        }
        for (int i = 0; i < MAX_HANDLERS; i++) {
            vsgx_exception_handler handler = __atomic_load_n(&handlers[i], __ATOMIC_ACQUIRE);
            if (handler && handler(&info) == VSGX_EXCEPTION_CONTINUE_EXECUTION)
                return VSGX_EXIT_EXCEPTION_HANDLED;
        }
    }
    gpr->rip = (uint64_t)vsgx_trts_abort_ecall;
    gpr->rsp = (uint64_t)base + td_get(VSGX_TD_STACK_TOP) - 8;
    return VSGX_EXIT_EXCEPTION_UNHANDLED;
}

void vsgx_abort(void)
{
    for (;;)
        __asm__ volatile("ud2");
}
