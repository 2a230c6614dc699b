/* socket.c — TCP socket helpers: a connecting socket, a listening socket,
 * numeric address parsing. Everything non-blocking and close-on-exec, since
 * the I/O backends never block and shards never fork-exec with our fds.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <unistd.h>

#include "socket.h"

int otp__sockaddr_parse(const char *addr, uint16_t port, struct sockaddr_storage *ss,
                        socklen_t *len)
{
    memset(ss, 0, sizeof *ss);
    struct sockaddr_in *in4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
    if (!addr)
        addr = "0.0.0.0";
    if (inet_pton(AF_INET, addr, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        in4->sin_port = htons(port);
        *len = sizeof *in4;
        return 0;
    }
    if (inet_pton(AF_INET6, addr, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(port);
        *len = sizeof *in6;
        return 0;
    }
    return -EINVAL;
}

static int fail(int fd)
{
    int r = -errno;
    close(fd);
    return r;
}

int otp__tcp_socket(int family)
{
    int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP);
    if (fd < 0)
        return -errno;
    /* Distribution traffic is small frames that want to leave now. */
    int one = 1;
    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) < 0)
        return fail(fd);
    return fd;
}

int otp__tcp_listen(const char *addr, uint16_t port, int backlog, uint16_t *bound_port)
{
    struct sockaddr_storage ss;
    socklen_t len;
    if (otp__sockaddr_parse(addr, port, &ss, &len) < 0)
        return -EINVAL;
    int fd = otp__tcp_socket(ss.ss_family);
    if (fd < 0)
        return fd;
    int one = 1;
    /* An IPv6 listener takes IPv6 only, as Erlang's epmd does: "::" and
     * "0.0.0.0" on one port are two listeners, not a clash. */
    if (ss.ss_family == AF_INET6 && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) < 0)
        return fail(fd);
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
        bind(fd, (struct sockaddr *)&ss, len) < 0 || listen(fd, backlog) < 0)
        return fail(fd);
    if (bound_port) {
        len = sizeof ss;
        if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
            return fail(fd);
        *bound_port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                     : ((struct sockaddr_in *)&ss)->sin_port);
    }
    return fd;
}
