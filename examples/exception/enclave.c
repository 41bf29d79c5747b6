/* Exceptions handled inside the enclave (SDM Vol. 3D 38.5: AEX, then EENTER on the next SSA
 * frame). One handler, registered by the "init" ecall, fixes three kinds of fault by editing
 * the interrupted context the SSA holds (info->cpu) and declines everything else:
 *
 *   #UD from ud2 (0f 0b)                      skip the 2-byte instruction
 *   #DE from "div %rcx" (48 f7 f1)            make the quotient UINT64_MAX, skip 3 bytes
 *   #PF from the probe load "mov (%rdi),%rax" (48 8b 07) on an address inside ELRANGE:
 *                                             remember EXINFO.MADDR, load ~0, skip 3 bytes
 *
 * A fault the handler declines (a #PF anywhere else, an int3, ...) abandons the ecall and the
 * untrusted caller gets it as an EnclaveFault; the TCS is clean again for the next ecall.
 */
#include "vsgx/enclave.h"

#define VECTOR_DE 0
#define VECTOR_BP 3
#define VECTOR_UD 6
#define VECTOR_PF 14

static uint64_t handled[32];         /* per vector */
static uint64_t last_fault_address;  /* EXINFO.MADDR of the last #PF the handler took */
static uint64_t last_fault_error;    /* and its EXINFO.ERRCD */

/* The probe: a load whose address, encoding and length the handler knows. */
extern const uint8_t probe_load[];
__attribute__((noinline)) static uint64_t probe(uint64_t addr)
{
    uint64_t value;
    __asm__ volatile(".globl probe_load\n"
                     ".hidden probe_load\n"
                     "probe_load: mov (%1), %0"   /* 48 8b 07 with value in rax, addr in rdi */
                     : "=a"(value)
                     : "D"(addr)
                     : "memory");
    return value;
}

static int handler(vsgx_exception_info *info)
{
    sgx_gprsgx *cpu = info->cpu;
    const uint8_t *rip = (const uint8_t *)cpu->rip;
    if (!vsgx_is_within_enclave(rip, 3))
        return VSGX_EXCEPTION_CONTINUE_SEARCH;
    switch (info->vector) {
    case VECTOR_UD:
        if (rip[0] != 0x0f || rip[1] != 0x0b)
            return VSGX_EXCEPTION_CONTINUE_SEARCH;
        cpu->rip += 2;
        break;
    case VECTOR_DE:
        if (rip[0] != 0x48 || rip[1] != 0xf7 || rip[2] != 0xf1)
            return VSGX_EXCEPTION_CONTINUE_SEARCH;
        cpu->rax = UINT64_MAX;   /* saturate: x / 0 = "infinity" */
        cpu->rdx = 0;
        cpu->rip += 3;
        break;
    case VECTOR_PF:
        if (rip != probe_load || !vsgx_is_within_enclave((void *)info->address, 1))
            return VSGX_EXCEPTION_CONTINUE_SEARCH;
        last_fault_address = info->address;
        last_fault_error = info->error_code;
        cpu->rax = UINT64_MAX;
        cpu->rip += 3;
        break;
    default:
        return VSGX_EXCEPTION_CONTINUE_SEARCH;
    }
    __atomic_add_fetch(&handled[info->vector], 1, __ATOMIC_RELAXED);
    return VSGX_EXCEPTION_CONTINUE_EXECUTION;
}

VSGX_ECALL(init)(void)
{
    static int registered;
    if (__atomic_exchange_n(&registered, 1, __ATOMIC_ACQ_REL))
        return 0;
    return (uint64_t)vsgx_register_exception_handler(handler);
}

/* ud2 between two increments: returns 2 when the handler skipped it. */
VSGX_ECALL(undefined_opcode)(void)
{
    uint64_t steps = 0;
    __asm__ volatile("inc %0\n\tud2\n\tinc %0" : "+r"(steps));
    return steps;
}

/* a / b with "div %rcx": UINT64_MAX for b = 0, courtesy of the handler. */
VSGX_ECALL(divide)(uint64_t a, uint64_t b)
{
    uint64_t quotient, remainder;
    __asm__ volatile(".byte 0x48, 0xf7, 0xf1"   /* div %rcx: rdx:rax / rcx */
                     : "=a"(quotient), "=d"(remainder)
                     : "a"(a), "d"(0), "c"(b));
    (void)remainder;
    return quotient;
}

/* The page below the heap: a guard page the loader never added (mapped PROT_NONE). */
static uint8_t *guard_page(void)
{
    uint64_t heap;
    __asm__ volatile("mov %%gs:(%1), %0" : "=r"(heap) : "r"((uint64_t)VSGX_TD_HEAP));
    return (uint8_t *)vsgx_enclave_base() + heap - 4096;
}

VSGX_ECALL(guard_address)(void) { return (uint64_t)guard_page(); }

/* Read an enclave address through the probe: ~0 when it faulted and the handler took it. */
VSGX_ECALL(read_guard)(uint64_t offset) { return probe((uint64_t)guard_page() + (offset & 4095)); }

VSGX_ECALL(last_fault)(void) { return last_fault_address; }
VSGX_ECALL(last_fault_error_code)(void) { return last_fault_error; }
VSGX_ECALL(handled_count)(uint64_t vector) { return vector < 32 ? handled[vector] : 0; }

/* Faults the handler declines. */
VSGX_ECALL(read_anywhere)(uint64_t addr) { return *(volatile uint64_t *)addr; }
VSGX_ECALL(breakpoint)(void)
{
    __asm__ volatile("int3");
    return 1;
}
