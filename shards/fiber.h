/* fiber.h — fibers (saved execution contexts) and the mmap'd stacks they run on.
 *
 * Internal to the shards: a shard thread runs its blocking processes on
 * fibers, switching between them and its own loop. Nothing here takes a lock;
 * every object belongs to one thread, and a fiber never moves between threads.
 */
#ifndef OTP_SHARDS_FIBER_H
#define OTP_SHARDS_FIBER_H

#include <stddef.h>
#include <sys/types.h>

/* The context switch: hand-written for x86-64 SysV and aarch64 AAPCS64 on
 * ELF systems, ucontext (swapcontext) elsewhere or when built with
 * -DOTP_FIBER_UCONTEXT. The ucontext path is slower: glibc's swapcontext
 * makes a sigprocmask system call on every switch. */
#if !defined(OTP_FIBER_UCONTEXT) && defined(__ELF__) && defined(__x86_64__)
#define OTP__FIBER_ASM_X86_64 1
#elif !defined(OTP_FIBER_UCONTEXT) && defined(__ELF__) && defined(__aarch64__)
#define OTP__FIBER_ASM_AARCH64 1
#else
#define OTP__FIBER_UCONTEXT 1
#include <ucontext.h>
#endif

#define OTP__STACK_DEFAULT_SIZE (64u * 1024u) /* usable bytes */

/* One stack: a private anonymous mapping laid out, from low to high
 * addresses, as [guard (PROT_NONE) | usable stack | this header]. The header
 * lives at the top of its own mapping so a stack costs no malloc, and an
 * overflow runs into the guard, away from it. */
typedef struct otp__stack {
    struct otp__stack *next, *prev; /* pool lists, while cached */
    char *map;                      /* start of the mapping: the guard */
    size_t map_size;                /* guard + usable + header, page multiple */
    char *base;                     /* lowest usable byte, just above the guard */
    size_t size;                    /* usable bytes; this header sits at base + size */
    void *tsan_fiber;               /* TSan builds: context of the fiber made on it */
} otp__stack;

/* A per-shard cache of stacks. Single-threaded: only the thread that owns
 * the pool may call the functions below on it. Fields are read-only for
 * callers except warm_max and sys_mmap, which may be set after init. */
typedef struct otp__stack_pool {
    size_t stack_size; /* usable bytes per stack */
    size_t guard_size; /* PROT_NONE bytes below each stack */
    size_t map_size;   /* bytes mapped per stack */
    size_t max_cached; /* stacks kept after otp__stack_put; the rest are unmapped */
    size_t warm_max;   /* cached stacks kept resident; colder ones are madvise'd */
    otp__stack *warm;  /* most recently returned first (doubly linked) */
    otp__stack *warm_tail;
    otp__stack *cold; /* madvise'd, pages given back (singly linked) */
    size_t nwarm, ncold;
    size_t nlive;    /* handed out and not yet returned */
    int madv_advice; /* MADV_FREE, or MADV_DONTNEED where the kernel lacks it */
    /* mmap, reachable from tests for fault injection */
    void *(*sys_mmap)(void *addr, size_t len, int prot, int flags, int fd, off_t off);
} otp__stack_pool;

/* A fiber's saved context. The caller owns the struct (embed it in a process
 * or a shard); it must stay at the same address while the fiber is
 * suspended. Fields are private to fiber.c. */
typedef struct otp__fiber {
#if defined(OTP__FIBER_UCONTEXT)
    ucontext_t uc;
#else
    void *sp; /* saved stack pointer while suspended; registers are on the stack */
#endif
    void (*entry)(void *arg);
    void *arg;
    otp__stack *stack;   /* NULL for a thread's own context */
    const void *asan_lo; /* ASan: the stack's bounds, learnt on the first */
    size_t asan_size;    /*   switch away from a thread's own context */
    void *asan_fake;     /* ASan: fake stack while suspended */
    void *tsan_fiber;    /* TSan: its context */
} otp__fiber;

/* Sets up a pool of stacks of at least stack_size usable bytes (0: the
 * default 64 KiB), keeping at most max_cached returned stacks for reuse.
 * No memory is mapped until the first otp__stack_get. Returns 0, or
 * -OTP_EBADARG for an absurd size (over 1 GiB). Owner thread only. */
int otp__stack_pool_init(otp__stack_pool *p, size_t stack_size, size_t max_cached);

/* Unmaps every cached stack. Stacks still handed out are the caller's bug
 * (asserted in debug builds); they stay mapped. Owner thread only. */
void otp__stack_pool_destroy(otp__stack_pool *p);

/* Hands out a stack: a cached one in O(1) without a system call when there is
 * one, else a new mapping. The caller owns it until otp__stack_put. Returns 0,
 * or -OTP_ENOMEM when the mapping (or its guard) cannot be made. */
int otp__stack_get(otp__stack_pool *p, otp__stack **out);

/* Gives a stack back to the pool it came from: cached (O(1); past warm_max
 * the least recently used cached stack has its pages released with one
 * madvise) or, when max_cached are already cached, unmapped. No fiber may be
 * running on it, and the fiber made on it must never be resumed. */
void otp__stack_put(otp__stack_pool *p, otp__stack *s);

/* Prepares the calling thread to run fibers: installs, once per process, the
 * SIGSEGV/SIGBUS handler that reports fiber stack overflows, and gives this
 * thread an alternate signal stack for it (keeping one the thread already
 * has, e.g. ASan's). Without it an overflow still cannot corrupt memory, but
 * the thread dies by a plain SIGSEGV with no report. Idempotent per thread.
 * Returns 0, -OTP_ENOMEM or -OTP_EIO. */
int otp__fiber_thread_init(void);

/* Removes and unmaps the alternate signal stack otp__fiber_thread_init
 * mapped (a stack it found in place is left alone). Call on the same thread,
 * on its own stack (not from a fiber), when it will run no more fibers. */
void otp__fiber_thread_exit(void);

/* Makes f describe the calling thread's own context (the shard loop), so
 * fibers can switch back to it. Call on the thread it describes, before its
 * first switch; f must outlive every fiber that switches to it. */
void otp__fiber_init_main(otp__fiber *f);

/* Makes f a new fiber that will run entry(arg) on stack s the first time it
 * is switched to. s must be free (no fiber running on it); the caller keeps
 * ownership of both and must not put s back before the fiber has finished.
 * entry must never return: a fiber ends by otp__fiber_exit (an entry that
 * returns is reported on stderr and the process aborts). */
void otp__fiber_make(otp__fiber *f, otp__stack *s, void (*entry)(void *arg), void *arg);

/* Saves the running context into from and resumes to; returns when some
 * fiber switches back to from. from must be the context running now, and to
 * a suspended (or newly made) context of the same thread. */
void otp__fiber_switch(otp__fiber *from, otp__fiber *to);

/* The last switch out of a fiber: like otp__fiber_switch, but self is never
 * resumed. Once this lands in to, self's stack may be put back to its pool. */
_Noreturn void otp__fiber_exit(otp__fiber *self, otp__fiber *to);

#endif
