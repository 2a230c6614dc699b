/* fiber.c — context switches (x86-64, aarch64, ucontext fallback), guarded
 * stacks pooled per shard, and the SIGSEGV handler that turns a hit on a
 * guard page into a one-line report instead of silent corruption.
 *
 * Sanitizer builds tell ASan and TSan about every switch, so both follow the
 * program onto fiber stacks without false reports.
 */
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sys/mman.h>
#include <unistd.h>

#include "otp/common.h"
#include "term_internal.h" /* OTP_ASSERT */
#include "fiber.h"

#if defined(__SANITIZE_ADDRESS__)
#define OTP__ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define OTP__ASAN 1
#endif
#endif
#if defined(__SANITIZE_THREAD__)
#define OTP__TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define OTP__TSAN 1
#endif
#endif
#ifdef OTP__ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif
#ifdef OTP__TSAN
#include <sanitizer/tsan_interface.h>
#endif

#ifndef MAP_STACK
#define MAP_STACK 0
#endif
#ifndef MAP_NORESERVE
#define MAP_NORESERVE 0
#endif

#define STACK_MAX_SIZE  ((size_t)1 << 30)
#define GUARD_MIN_BYTES (16u * 1024u) /* a frame up to this big cannot jump the guard */
#define WARM_DEFAULT    64u           /* 4 MiB of default stacks kept resident per pool */
#define ALTSTACK_SIZE   (64u * 1024u)
#define HEADER_SIZE     ((sizeof(otp__stack) + 15u) & ~(size_t)15u)

/* Per-thread state. initial-exec, so that the signal handler reads it
 * without going through the lazy dynamic-TLS allocator, which is not
 * async-signal-safe. */
struct fiber_thread {
    const otp__stack *running; /* stack under the running fiber, NULL on the
                                  thread's own; read by the SIGSEGV handler */
    bool ready;                /* otp__fiber_thread_init done */
    char *altstack;            /* mapping we made for sigaltstack, or NULL */
    size_t altstack_map_size;
    otp__fiber *switching_from; /* ASan: the context whose bounds the next
                                   landing learns (NULL: it is finished) */
    const void *landed_lo;      /* ASan: scratch for finish_switch_fiber */
    size_t landed_size;
};
static _Thread_local struct fiber_thread tls __attribute__((tls_model("initial-exec")));

static size_t round_up(size_t n, size_t to)
{
    return (n + to - 1) / to * to;
}

/* ---------------------------------------------------------------- stacks */

int otp__stack_pool_init(otp__stack_pool *p, size_t stack_size, size_t max_cached)
{
    if (stack_size == 0)
        stack_size = OTP__STACK_DEFAULT_SIZE;
    if (stack_size > STACK_MAX_SIZE)
        return -OTP_EBADARG;
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    memset(p, 0, sizeof(*p));
    p->guard_size = round_up(GUARD_MIN_BYTES, page);
    /* The header shares the top page with the first frames: a stack costs
     * exactly the pages it touches, plus nothing for bookkeeping. */
    size_t upper = round_up(stack_size + HEADER_SIZE, page);
    p->map_size = p->guard_size + upper;
    p->stack_size = upper - HEADER_SIZE;
    p->max_cached = max_cached;
    p->warm_max = max_cached < WARM_DEFAULT ? max_cached : WARM_DEFAULT;
#ifdef MADV_FREE
    p->madv_advice = MADV_FREE;
#else
    p->madv_advice = MADV_DONTNEED;
#endif
    p->sys_mmap = mmap;
    return 0;
}

static int map_stack(otp__stack_pool *p, otp__stack **out)
{
    char *m = p->sys_mmap(NULL, p->map_size, PROT_READ | PROT_WRITE,
                          MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
    if (m == MAP_FAILED)
        return -OTP_ENOMEM;
    /* Fails mostly at vm.max_map_count: each stack is two mappings, since
     * the guard splits it. */
    if (mprotect(m, p->guard_size, PROT_NONE) != 0) {
        munmap(m, p->map_size);
        return -OTP_ENOMEM;
    }
    otp__stack *s = (otp__stack *)(m + p->map_size - HEADER_SIZE);
    memset(s, 0, sizeof(*s));
    s->map = m;
    s->map_size = p->map_size;
    s->base = m + p->guard_size;
    s->size = p->stack_size;
    *out = s;
    return 0;
}

static void forget_fiber(otp__stack *s)
{
#ifdef OTP__TSAN
    if (s->tsan_fiber)
        __tsan_destroy_fiber(s->tsan_fiber);
#endif
    s->tsan_fiber = NULL;
}

static void unmap_stack(otp__stack *s)
{
    forget_fiber(s);
#ifdef OTP__ASAN
    /* Frames that never returned left poisoned shadow; clear it before the
     * range can be mapped again for something else. */
    __asan_unpoison_memory_region(s->base, s->size);
#endif
    munmap(s->map, s->map_size);
}

void otp__stack_pool_destroy(otp__stack_pool *p)
{
    OTP_ASSERT(p->nlive == 0);
    otp__stack *s = p->warm;
    while (s) {
        otp__stack *n = s->next;
        unmap_stack(s);
        s = n;
    }
    s = p->cold;
    while (s) {
        otp__stack *n = s->next;
        unmap_stack(s);
        s = n;
    }
    p->warm = p->warm_tail = p->cold = NULL;
    p->nwarm = p->ncold = 0;
}

int otp__stack_get(otp__stack_pool *p, otp__stack **out)
{
    otp__stack *s = p->warm;
    if (OTP_LIKELY(s)) {
        p->warm = s->next;
        if (p->warm)
            p->warm->prev = NULL;
        else
            p->warm_tail = NULL;
        p->nwarm--;
    } else if ((s = p->cold) != NULL) {
        /* Its pages come back zeroed, one minor fault each, as touched. */
        p->cold = s->next;
        p->ncold--;
    } else {
        int rc = map_stack(p, &s);
        if (rc != 0)
            return rc;
    }
    s->next = s->prev = NULL;
    p->nlive++;
    *out = s;
    return 0;
}

/* Why a high-water mark, and why madvise only past it: a returned stack
 * keeps every page its fiber ever touched resident, up to stack_size each.
 * Releasing them on every put would cost a system call per put, a zero-fill
 * fault per page on the next use and, in a multi-threaded process, a TLB
 * shootdown across the shard threads: far more than the switch itself. Not
 * releasing them at all would let a burst of blocked processes pin
 * max_cached * stack_size bytes forever. So the warm_max most recently
 * returned stacks stay as they are (they are what the next gets will hand
 * out, still in cache), and the one that falls off the warm end is released
 * with MADV_FREE, which leaves the pages in place until the kernel actually
 * needs memory, so a stack reused soon usually costs no fault at all. The
 * price is that RSS counts those pages until reclaimed; MADV_DONTNEED (used
 * where MADV_FREE is missing) frees at once but always refaults. */
static void release_pages(otp__stack_pool *p, otp__stack *s)
{
    /* Whole pages below the one holding the header, which must survive. */
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    char *end = (char *)((uintptr_t)s & ~(uintptr_t)(page - 1));
    if (end <= s->base)
        return;
    if (madvise(s->base, (size_t)(end - s->base), p->madv_advice) != 0 &&
        p->madv_advice != MADV_DONTNEED) {
        p->madv_advice = MADV_DONTNEED; /* kernel older than 4.5 */
        (void)madvise(s->base, (size_t)(end - s->base), MADV_DONTNEED);
    }
}

void otp__stack_put(otp__stack_pool *p, otp__stack *s)
{
    OTP_ASSERT(p->nlive > 0);
    OTP_ASSERT(s != tls.running);
    p->nlive--;
    forget_fiber(s);
    if (p->nwarm + p->ncold >= p->max_cached) {
        unmap_stack(s);
        return;
    }
    s->prev = NULL;
    s->next = p->warm;
    if (p->warm)
        p->warm->prev = s;
    else
        p->warm_tail = s;
    p->warm = s;
    p->nwarm++;
    if (p->nwarm > p->warm_max) {
        otp__stack *cold = p->warm_tail;
        p->warm_tail = cold->prev;
        if (p->warm_tail)
            p->warm_tail->next = NULL;
        else
            p->warm = NULL;
        p->nwarm--;
        release_pages(p, cold);
        cold->prev = NULL;
        cold->next = p->cold;
        p->cold = cold;
        p->ncold++;
    }
}

/* ------------------------------------------------- overflow detection */

/* The previous dispositions: signal handling is process-wide by nature, so
 * this is the one piece of global state here. Written once, before our
 * handler is installed, and only read afterwards. */
static pthread_once_t handler_once = PTHREAD_ONCE_INIT;
static int handler_rc;
static struct sigaction prev_segv, prev_bus;

static void write_all(const char *s, size_t n)
{
    while (n > 0) {
        ssize_t w = write(STDERR_FILENO, s, n);
        if (w <= 0)
            return;
        s += w;
        n -= (size_t)w;
    }
}

/* printf is not async-signal-safe; these are. */
static size_t fmt_dec(char *out, uintptr_t v)
{
    char tmp[24];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    return n;
}

static size_t fmt_hex(char *out, uintptr_t v)
{
    char tmp[20];
    size_t n = 0;
    do {
        tmp[n++] = "0123456789abcdef"[v & 15];
        v >>= 4;
    } while (v);
    out[0] = '0';
    out[1] = 'x';
    for (size_t i = 0; i < n; i++)
        out[2 + i] = tmp[n - 1 - i];
    return n + 2;
}

static void on_fault(int sig, siginfo_t *si, void *uctx)
{
    const otp__stack *s = tls.running;
    uintptr_t addr = (uintptr_t)si->si_addr;
    if (s && addr >= (uintptr_t)s->map && addr < (uintptr_t)s->base) {
        char line[128];
        size_t n = 0;
        static const char a[] = "libotp: fiber stack overflow (stack of ";
        static const char b[] = " bytes at ";
        memcpy(line + n, a, sizeof(a) - 1);
        n += sizeof(a) - 1;
        n += fmt_dec(line + n, s->size);
        memcpy(line + n, b, sizeof(b) - 1);
        n += sizeof(b) - 1;
        n += fmt_hex(line + n, (uintptr_t)s->base);
        line[n++] = ')';
        line[n++] = '\n';
        write_all(line, n);
        abort();
    }
    /* Not ours: behave as if we had never been installed. A handler that was
     * there before gets the signal as it would have; a default or ignored
     * disposition is put back, and the fault, re-executed on return, takes
     * it (a SIGSEGV sent by kill() recurs by raise() instead). */
    const struct sigaction *prev = sig == SIGBUS ? &prev_bus : &prev_segv;
    if ((prev->sa_flags & SA_SIGINFO) && prev->sa_sigaction) {
        prev->sa_sigaction(sig, si, uctx);
        return;
    }
    if (!(prev->sa_flags & SA_SIGINFO) && prev->sa_handler != SIG_DFL &&
        prev->sa_handler != SIG_IGN) {
        prev->sa_handler(sig);
        return;
    }
    sigaction(sig, prev, NULL);
    if (si->si_code <= 0)
        raise(sig);
}

static void install_handler(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = on_fault;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    /* Read the old dispositions first, so the handler never sees them
     * half-written. */
    if (sigaction(SIGSEGV, NULL, &prev_segv) != 0 || sigaction(SIGBUS, NULL, &prev_bus) != 0 ||
        sigaction(SIGSEGV, &sa, NULL) != 0 || sigaction(SIGBUS, &sa, NULL) != 0)
        handler_rc = -OTP_EIO;
}

int otp__fiber_thread_init(void)
{
    if (pthread_once(&handler_once, install_handler) != 0)
        return -OTP_EIO;
    if (handler_rc != 0)
        return handler_rc;
    if (tls.ready)
        return 0;
    stack_t cur;
    if (sigaltstack(NULL, &cur) != 0)
        return -OTP_EIO;
    if (!(cur.ss_flags & SS_DISABLE)) {
        tls.ready = true; /* someone (ASan, the application) gave it one */
        return 0;
    }
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t map_size = page + ALTSTACK_SIZE;
    char *m = mmap(NULL, map_size, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
    if (m == MAP_FAILED)
        return -OTP_ENOMEM;
    if (mprotect(m, page, PROT_NONE) != 0) {
        munmap(m, map_size);
        return -OTP_ENOMEM;
    }
    stack_t ss = {.ss_sp = m + page, .ss_size = ALTSTACK_SIZE, .ss_flags = 0};
    if (sigaltstack(&ss, NULL) != 0) {
        munmap(m, map_size);
        return -OTP_EIO;
    }
    tls.altstack = m;
    tls.altstack_map_size = map_size;
    tls.ready = true;
    return 0;
}

void otp__fiber_thread_exit(void)
{
    OTP_ASSERT(tls.running == NULL);
    if (tls.altstack) {
        stack_t ss = {.ss_sp = NULL, .ss_size = 0, .ss_flags = SS_DISABLE};
        if (sigaltstack(&ss, NULL) == 0)
            munmap(tls.altstack, tls.altstack_map_size);
        tls.altstack = NULL;
    }
    tls.ready = false;
}

static _Noreturn void die(const char *msg)
{
    write_all(msg, strlen(msg));
    abort();
}

/* ------------------------------------------------------ the switch */

/* Before every switch: tell the sanitizers. dying: from never runs again.
 * Always inlined: once __tsan_switch_to_fiber has run, TSan books function
 * exits on the new fiber, so no instrumented return may come between it and
 * the switch (at -O0 a plain static inline function would be one). */
#define ALWAYS_INLINE inline __attribute__((always_inline))
static ALWAYS_INLINE void leave(otp__fiber *from, otp__fiber *to, bool dying)
{
#ifdef OTP__ASAN
    OTP_ASSERT(to->asan_lo != NULL);
    tls.switching_from = dying ? NULL : from;
    /* A NULL save slot tells ASan to free the dying fiber's fake stack. */
    __sanitizer_start_switch_fiber(dying ? NULL : &from->asan_fake, to->asan_lo, to->asan_size);
#endif
#ifdef OTP__TSAN
    __tsan_switch_to_fiber(to->tsan_fiber, 0); /* 0: the switch orders memory */
#endif
    (void)from;
    (void)to;
    (void)dying;
}

/* First thing on arrival in self, resumed or (fresh) new. The running stack
 * is recorded here rather than before leaving, so that the old fiber's last
 * frames, sanitizer calls included, still count as on the old stack. ASan
 * reports the bounds of the stack we came from, which is how a thread's own
 * context learns its bounds. */
static ALWAYS_INLINE void land(otp__fiber *self, bool fresh)
{
    tls.running = self->stack;
    /* The SIGSEGV handler reads it on this thread: keep the store ahead of
     * whatever self does next. */
    atomic_signal_fence(memory_order_seq_cst);
#ifdef OTP__ASAN
    __sanitizer_finish_switch_fiber(fresh ? NULL : self->asan_fake, &tls.landed_lo,
                                    &tls.landed_size);
    otp__fiber *prev = tls.switching_from;
    if (prev && !prev->asan_lo) {
        prev->asan_lo = tls.landed_lo;
        prev->asan_size = tls.landed_size;
    }
#endif
    (void)fresh;
}

/* Called by the assembly trampoline (or the ucontext one) with the new
 * fiber; not static because assembly refers to it by name. */
_Noreturn void otp__fiber_start(otp__fiber *f) __attribute__((visibility("hidden"), used));
_Noreturn void otp__fiber_start(otp__fiber *f)
{
    land(f, true);
    f->entry(f->arg);
    die("libotp: fiber entry function returned; a fiber must end with otp__fiber_exit\n");
}

#if defined(OTP__FIBER_ASM_X86_64)
/* otp__fiber_swap(void **save_sp, void *load_sp): pushes the callee-saved
 * registers, the MXCSR and the x87 control word (both callee-saved control
 * state in the SysV ABI), stores rsp in *save_sp, loads load_sp and pops the
 * same from there. The two control words are loaded only when they differ
 * from the running ones (almost never): ldmxcsr and fldcw are slow, and a
 * call pays two switches. The frame, from the saved rsp up:
 *   0 x87 CW (2 bytes)  8 MXCSR (4 bytes)  16 r15  24 r14  32 r13  40 r12
 *   48 rbx  56 rbp  64 return address
 * A new fiber's frame "returns" into the trampoline with the fiber in rbx
 * and rbp 0, which ends frame-pointer unwinding there. */
__asm__(".pushsection .text\n"
        ".p2align 4\n"
        ".globl otp__fiber_swap\n"
        ".hidden otp__fiber_swap\n"
        ".type otp__fiber_swap, @function\n"
        "otp__fiber_swap:\n"
        "    pushq %rbp\n"
        "    pushq %rbx\n"
        "    pushq %r12\n"
        "    pushq %r13\n"
        "    pushq %r14\n"
        "    pushq %r15\n"
        "    subq $16, %rsp\n"
        "    stmxcsr 8(%rsp)\n"
        "    fnstcw (%rsp)\n"
        "    movl 8(%rsp), %eax\n"
        "    movzwl (%rsp), %ecx\n"
        "    movq %rsp, (%rdi)\n"
        "    movq %rsi, %rsp\n"
        "    cmpl 8(%rsp), %eax\n"
        "    je 1f\n"
        "    ldmxcsr 8(%rsp)\n"
        "1:\n"
        "    cmpw (%rsp), %cx\n"
        "    je 2f\n"
        "    fldcw (%rsp)\n"
        "2:\n"
        "    addq $16, %rsp\n"
        "    popq %r15\n"
        "    popq %r14\n"
        "    popq %r13\n"
        "    popq %r12\n"
        "    popq %rbx\n"
        "    popq %rbp\n"
        "    ret\n"
        ".size otp__fiber_swap, .-otp__fiber_swap\n"
        "\n"
        ".p2align 4\n"
        ".globl otp__fiber_tramp\n"
        ".hidden otp__fiber_tramp\n"
        ".type otp__fiber_tramp, @function\n"
        "otp__fiber_tramp:\n"
        "    .cfi_startproc\n"
        "    .cfi_undefined rip\n"
        "    movq %rbx, %rdi\n"
        "    call otp__fiber_start\n"
        "    ud2\n"
        "    .cfi_endproc\n"
        ".size otp__fiber_tramp, .-otp__fiber_tramp\n"
        ".popsection\n");
#define FRAME_WORDS 11 /* 9 popped by swap, 2 of padding that align the trampoline's call */
#elif defined(OTP__FIBER_ASM_AARCH64)
/* otp__fiber_swap(void **save_sp, void *load_sp), AAPCS64: saves x19-x28,
 * x29 (fp), x30 (lr), d8-d15 and the FPCR (rounding mode and the like, kept
 * per fiber as on x86-64), then swaps sp. The frame, from the saved sp up:
 *   0..72 x19-x28  80 x29  88 x30  96..152 d8-d15  160 FPCR  168 padding
 * The FPCR is written only when it differs: msr fpcr can be slow. A new
 * fiber's x30 is the trampoline, with the fiber in x19 and x29 0. */
__asm__(".pushsection .text\n"
        ".p2align 4\n"
        ".globl otp__fiber_swap\n"
        ".hidden otp__fiber_swap\n"
        ".type otp__fiber_swap, %function\n"
        "otp__fiber_swap:\n"
        "    sub sp, sp, #176\n"
        "    stp x19, x20, [sp, #0]\n"
        "    stp x21, x22, [sp, #16]\n"
        "    stp x23, x24, [sp, #32]\n"
        "    stp x25, x26, [sp, #48]\n"
        "    stp x27, x28, [sp, #64]\n"
        "    stp x29, x30, [sp, #80]\n"
        "    stp d8, d9, [sp, #96]\n"
        "    stp d10, d11, [sp, #112]\n"
        "    stp d12, d13, [sp, #128]\n"
        "    stp d14, d15, [sp, #144]\n"
        "    mrs x9, fpcr\n"
        "    str x9, [sp, #160]\n"
        "    mov x10, sp\n"
        "    str x10, [x0]\n"
        "    mov sp, x1\n"
        "    ldr x10, [sp, #160]\n"
        "    cmp x9, x10\n"
        "    b.eq 1f\n"
        "    msr fpcr, x10\n"
        "1:\n"
        "    ldp x19, x20, [sp, #0]\n"
        "    ldp x21, x22, [sp, #16]\n"
        "    ldp x23, x24, [sp, #32]\n"
        "    ldp x25, x26, [sp, #48]\n"
        "    ldp x27, x28, [sp, #64]\n"
        "    ldp x29, x30, [sp, #80]\n"
        "    ldp d8, d9, [sp, #96]\n"
        "    ldp d10, d11, [sp, #112]\n"
        "    ldp d12, d13, [sp, #128]\n"
        "    ldp d14, d15, [sp, #144]\n"
        "    add sp, sp, #176\n"
        "    ret\n"
        ".size otp__fiber_swap, .-otp__fiber_swap\n"
        "\n"
        ".p2align 4\n"
        ".globl otp__fiber_tramp\n"
        ".hidden otp__fiber_tramp\n"
        ".type otp__fiber_tramp, %function\n"
        "otp__fiber_tramp:\n"
        "    .cfi_startproc\n"
        "    .cfi_undefined x30\n"
        "    mov x0, x19\n"
        "    bl otp__fiber_start\n"
        "    brk #0\n"
        "    .cfi_endproc\n"
        ".size otp__fiber_tramp, .-otp__fiber_tramp\n"
        ".popsection\n");
#define FRAME_WORDS 22
#endif

#if !defined(OTP__FIBER_UCONTEXT)
void otp__fiber_swap(void **save_sp, void *load_sp) __attribute__((visibility("hidden")));
void otp__fiber_tramp(void) __attribute__((visibility("hidden")));
#else
/* makecontext passes only ints: the fiber pointer travels in two halves. */
static void start_ucontext(unsigned lo, unsigned hi)
{
    otp__fiber_start((otp__fiber *)(uintptr_t)(((uint64_t)hi << 32) | lo));
}
#endif

void otp__fiber_init_main(otp__fiber *f)
{
    OTP_ASSERT(tls.ready); /* without the alternate stack, overflows go unreported */
    memset(f, 0, sizeof(*f));
#ifdef OTP__TSAN
    f->tsan_fiber = __tsan_get_current_fiber();
#endif
}

void otp__fiber_make(otp__fiber *f, otp__stack *s, void (*entry)(void *arg), void *arg)
{
    OTP_ASSERT(s != tls.running);
    memset(f, 0, sizeof(*f));
    f->entry = entry;
    f->arg = arg;
    f->stack = s;
    f->asan_lo = s->base;
    f->asan_size = s->size;
#ifdef OTP__ASAN
    /* The last fiber on this stack may have left poisoned frames behind. */
    __asan_unpoison_memory_region(s->base, s->size);
#endif
    forget_fiber(s); /* a fiber made on s before is finished, by contract */
#ifdef OTP__TSAN
    s->tsan_fiber = __tsan_create_fiber(0);
    f->tsan_fiber = s->tsan_fiber;
#endif
#if defined(OTP__FIBER_UCONTEXT)
    int rc = getcontext(&f->uc); /* also captures the signal mask and FP environment */
    OTP_ASSERT(rc == 0);
    (void)rc;
    f->uc.uc_stack.ss_sp = s->base;
    f->uc.uc_stack.ss_size = s->size;
    f->uc.uc_link = NULL;
    uintptr_t p = (uintptr_t)f;
    makecontext(&f->uc, (void (*)(void))start_ucontext, 2, (unsigned)(p & 0xffffffffu),
                (unsigned)((uint64_t)p >> 32));
#else
    /* The stack top (the header's address) is 16-byte aligned. */
    uint64_t *sp = (uint64_t *)(void *)(s->base + s->size) - FRAME_WORDS;
    memset(sp, 0, FRAME_WORDS * sizeof(*sp));
#if defined(OTP__FIBER_ASM_X86_64)
    /* A new fiber starts with its creator's FP control state, as getcontext
     * would give it. */
    uint16_t fpucw;
    uint32_t mxcsr;
    __asm__ volatile("fnstcw %0" : "=m"(fpucw));
    __asm__ volatile("stmxcsr %0" : "=m"(mxcsr));
    sp[0] = fpucw;
    sp[1] = mxcsr;
    sp[6] = (uint64_t)(uintptr_t)f;                /* rbx */
    sp[8] = (uint64_t)(uintptr_t)otp__fiber_tramp; /* return address */
#else
    uint64_t fpcr;
    __asm__ volatile("mrs %0, fpcr" : "=r"(fpcr));
    sp[0] = (uint64_t)(uintptr_t)f;                 /* x19 */
    sp[11] = (uint64_t)(uintptr_t)otp__fiber_tramp; /* x30 */
    sp[20] = fpcr;
#endif
    f->sp = sp;
#endif
}

/* used: test_fiber's assembly calls it by name, which link-time
 * optimisation cannot see. */
__attribute__((used)) void otp__fiber_switch(otp__fiber *from, otp__fiber *to)
{
    OTP_ASSERT(from != to);
    leave(from, to, false);
#if defined(OTP__FIBER_UCONTEXT)
    int rc = swapcontext(&from->uc, &to->uc);
    OTP_ASSERT(rc == 0);
    (void)rc;
#else
    otp__fiber_swap(&from->sp, to->sp);
#endif
    land(from, false);
}

_Noreturn void otp__fiber_exit(otp__fiber *self, otp__fiber *to)
{
    OTP_ASSERT(self != to);
    leave(self, to, true);
#if defined(OTP__FIBER_UCONTEXT)
    setcontext(&to->uc);
#else
    otp__fiber_swap(&self->sp, to->sp);
#endif
    die("libotp: a finished fiber was resumed\n");
}
