/* Enclave entry and exit: the code at the TCS's OENTRY (SDM Vol. 3D ENCLU[EENTER], [EEXIT]).
 *
 * Every EENTER lands in enclave_entry with RAX = CSSA, RBX = TCS, RCX = the return address and
 * RDI/RSI/RDX as abi.h describes. The entry records where to exit to, switches to the
 * thread's own stack (or, for an exception, its exception stack), resets the floating-point
 * control state the untrusted caller could have changed, and calls into C. Every exit goes
 * through exit_enclave, which clears the registers that do not carry results and restores the
 * caller's RSP/RBP before ENCLU[EEXIT].
 */
#include "vsgx/abi.h"

#define ENCLU .byte 0x0f, 0x01, 0xd7
#define EEXIT 4

    .section .rodata
    .balign 4
mxcsr_default:
    .long 0x1f80

    .text
    .globl enclave_entry
    .type enclave_entry, @function
enclave_entry:
    cld
    mov     %rsp, %gs:VSGX_TD_URSP
    mov     %rbp, %gs:VSGX_TD_URBP
    mov     %rcx, %gs:VSGX_TD_EXIT_ADDR
    lea     __vsgx_base(%rip), %r11
    mov     %r11, %gs:VSGX_TD_BASE
    ldmxcsr mxcsr_default(%rip)
    fninit
    test    %rax, %rax
    jnz     .Lexception
    cmp     $VSGX_CMD_ORET, %rdi
    je      .Loret
    cmpq    $0, %gs:VSGX_TD_OCALL_RSP
    jne     .Lbad_state
    mov     %gs:VSGX_TD_STACK_TOP, %rsp
    add     %r11, %rsp
    xor     %ebp, %ebp
    mov     %rdx, %rsi                  /* the shared area */
    call    vsgx_trts_ecall             /* (index, shared) -> status */
    mov     %rax, %rsi
    mov     $VSGX_EXIT_ECALL_RETURN, %edi
    jmp     exit_enclave

.Loret:
    mov     %gs:VSGX_TD_OCALL_RSP, %rax
    test    %rax, %rax
    jz      .Lbad_state
    mov     %rax, %rsp
    movq    $0, %gs:VSGX_TD_OCALL_RSP
    mov     %rsi, %rax                  /* the ocall's return value */
    pop     %r15
    pop     %r14
    pop     %r13
    pop     %r12
    pop     %rbx
    pop     %rbp
    ret                                 /* from vsgx_trts_ocall_switch */

.Lexception:
    mov     %gs:VSGX_TD_XSTACK_TOP, %rsp
    add     %r11, %rsp
    xor     %ebp, %ebp
    mov     %rax, %rdi                  /* CSSA */
    mov     %rdx, %rsi                  /* the shared area */
    call    vsgx_trts_exception         /* -> exit reason */
    mov     %rax, %rdi
    xor     %esi, %esi
    jmp     exit_enclave

.Lbad_state:
    mov     $VSGX_EXIT_ECALL_RETURN, %edi
    mov     $VSGX_STATUS_INVALID_STATE, %esi
    jmp     exit_enclave
    .size enclave_entry, . - enclave_entry

/* uint64_t vsgx_trts_ocall_switch(void): leave for an ocall the caller described in the
 * shared area; returns the value the untrusted runtime passed back with VSGX_CMD_ORET. */
    .globl vsgx_trts_ocall_switch
    .hidden vsgx_trts_ocall_switch
    .type vsgx_trts_ocall_switch, @function
vsgx_trts_ocall_switch:
    push    %rbp
    push    %rbx
    push    %r12
    push    %r13
    push    %r14
    push    %r15
    mov     %rsp, %gs:VSGX_TD_OCALL_RSP
    mov     $VSGX_EXIT_OCALL, %edi
    xor     %esi, %esi
    jmp     exit_enclave
    .size vsgx_trts_ocall_switch, . - vsgx_trts_ocall_switch

/* Where an ecall resumes after an exception no handler took: leave with ECALL_ABORTED. */
    .globl vsgx_trts_abort_ecall
    .hidden vsgx_trts_abort_ecall
    .type vsgx_trts_abort_ecall, @function
vsgx_trts_abort_ecall:
    movq    $0, %gs:VSGX_TD_OCALL_RSP
    movq    $0, %gs:VSGX_TD_IN_ECALL
    mov     $VSGX_EXIT_ECALL_ABORTED, %edi
    xor     %esi, %esi
    jmp     exit_enclave
    .size vsgx_trts_abort_ecall, . - vsgx_trts_abort_ecall

/* EEXIT with RDI = reason and RSI = status; nothing else leaves the enclave. */
    .type exit_enclave, @function
exit_enclave:
    mov     %gs:VSGX_TD_EXIT_ADDR, %rbx
    mov     %gs:VSGX_TD_URSP, %rsp
    mov     %gs:VSGX_TD_URBP, %rbp
    xor     %eax, %eax
    xor     %ecx, %ecx
    xor     %edx, %edx
    xor     %r8d, %r8d
    xor     %r9d, %r9d
    xor     %r10d, %r10d
    xor     %r11d, %r11d
    xor     %r12d, %r12d
    xor     %r13d, %r13d
    xor     %r14d, %r14d
    xor     %r15d, %r15d
    pxor    %xmm0, %xmm0
    pxor    %xmm1, %xmm1
    pxor    %xmm2, %xmm2
    pxor    %xmm3, %xmm3
    pxor    %xmm4, %xmm4
    pxor    %xmm5, %xmm5
    pxor    %xmm6, %xmm6
    pxor    %xmm7, %xmm7
    pxor    %xmm8, %xmm8
    pxor    %xmm9, %xmm9
    pxor    %xmm10, %xmm10
    pxor    %xmm11, %xmm11
    pxor    %xmm12, %xmm12
    pxor    %xmm13, %xmm13
    pxor    %xmm14, %xmm14
    pxor    %xmm15, %xmm15
    mov     $EEXIT, %eax
    ENCLU
    ud2
    .size exit_enclave, . - exit_enclave

    .section .note.GNU-stack, "", @progbits
