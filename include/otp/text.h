/* text.h — terms as Erlang text: printing (~w, ~p), parsing literals,
 * building terms from a format with holes, and matching against patterns.
 */
#ifndef OTP_TEXT_H
#define OTP_TEXT_H

#include <stdarg.h>
#include <stddef.h>

#include "common.h"
#include "etf.h"
#include "term.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct otp_print_opts {
    /* Pids, ports and refs on this node print as <0.ID.Serial>, the way a
     * node prints its own. OTP_NONE or 0: no node is local. */
    otp_term local_node;
    /* Other nodes' pids print as <N.ID.Serial> like Erlang, where N is
     * Erlang's node-local channel number (for us the node atom's index).
     * With this set they print as <node@host.ID.Serial> instead (the node
     * quoted as ~w would quote it, e.g. <'n-1@h'.7.3>): not Erlang syntax,
     * but it keeps the node, for debugging wire traffic. */
    bool node_names;
    /* ~p only: line width (default 80). */
    int width;
} otp_print_opts;

/* Appends io_lib:format("~w", [T]) to out, as UTF-8 (opts may be NULL).
 * Floats print in Erlang's shortest round-trip form. Returns 0 or
 * -OTP_ENOMEM / -OTP_EBADARG (OTP_NONE inside t). Iterative: any depth. */
int otp_print(otp_buf *out, otp_term t, const otp_print_opts *opts);
/* Appends a readable ~p-like form: strings and printable binaries as text,
 * long terms broken over lines with indentation. */
int otp_print_pretty(otp_buf *out, otp_term t, const otp_print_opts *opts);
/* ~w into a fresh NUL-terminated string in the arena (NULL on failure). */
const char *otp_sprint(otp_arena *a, otp_term t);

/* Parses one Erlang literal term: integers (1, -5, 16#FF, 2#101, $a, $\n),
 * floats (1.5, 2.0e-3), atoms (ok, 'Quoted atom'), strings ("a\n"),
 * binaries (<<"ab",1,2>>, <<1:3>>, <<"é"/utf8>>), lists, improper lists
 * ([1|2]), tuples and maps (#{k => v}), with % comments and an optional
 * final '.'. *used (if not NULL) gets the bytes consumed. The term lives in
 * `a`. Returns 0 or -OTP_EPARSE with *err saying where (byte offset) and
 * what was expected. Iterative: any nesting depth. */
int otp_parse(otp_arena *a, const char *text, size_t len, otp_term *out, size_t *used,
              otp_error *err);
/* NUL-terminated convenience: the term, or OTP_NONE on any error. */
otp_term otp_parse_str(otp_arena *a, const char *text);

/* Builds a term from text with holes, in the spirit of ei_x_format:
 *   ~a  atom from a const char *          ~s  string (list) from const char *
 *   ~b  binary from a const char *        ~B  binary from (const void *, size_t)
 *   ~i  int     ~l  long     ~u  unsigned long     ~L  int64_t
 *   ~f  double  ~w  an otp_term
 * e.g. otp_format(a, "{~a, [~i, ~i], ~w}", "ok", 1, 2, t).
 * Returns OTP_NONE on a malformed format or out of memory. */
otp_term otp_format(otp_arena *a, const char *fmt, ...);
otp_term otp_vformat(otp_arena *a, const char *fmt, va_list ap);

/* Matches t against an Erlang pattern. Variables (Capitalised, or _Name)
 * are bound in order of first appearance into binds[0..nbinds); `_`
 * matches anything; a variable used twice must match =:= terms; literals
 * match with =:=. Bound terms point into t (no copy).
 *   otp_term v[2];
 *   if (otp_match("{ok, X, [Y | _]}", t, v, 2) == 0) ... v[0] is X, v[1] Y
 * Returns 0 on a match, -OTP_ENOMATCH if t does not match, -OTP_EPARSE for
 * a bad pattern, -OTP_ENOSPC if the pattern has more than nbinds variables. */
int otp_match(const char *pattern, otp_term t, otp_term *binds, size_t nbinds);

#ifdef __cplusplus
}
#endif
#endif
