/* socket.h — small TCP socket helpers for the I/O backends' users: sockets
 * come out non-blocking and close-on-exec, errors as -errno. Internal API.
 */
#ifndef OTP_NET_SOCKET_H
#define OTP_NET_SOCKET_H

#include <stdint.h>
#include <sys/socket.h>

/* A TCP socket for connecting (AF_INET or AF_INET6), with TCP_NODELAY.
 * Returns the fd (the caller's to close) or -errno. */
int otp__tcp_socket(int family);

/* A listening TCP socket on a numeric address ("127.0.0.1", "::1"; NULL means
 * 0.0.0.0) and port (0: any), with SO_REUSEADDR and TCP_NODELAY (which
 * accepted sockets inherit); IPv6 listeners are IPv6-only. *bound_port, if not NULL, gets the port
 * bound. Returns the fd (the caller's to close) or -errno (-EINVAL for an address that is not
 * numeric: resolving names would block). */
int otp__tcp_listen(const char *addr, uint16_t port, int backlog, uint16_t *bound_port);

/* Fills *ss and *len from a numeric IPv4 or IPv6 address and a port.
 * Returns 0 or -EINVAL. */
int otp__sockaddr_parse(const char *addr, uint16_t port, struct sockaddr_storage *ss,
                        socklen_t *len);

#endif
