/* A TCP forwarder on 127.0.0.1 between a device and the server, so the
 * simulator can partition the network: while partitioned nothing is
 * forwarded in either direction (bytes wait, as packets that are dropped and
 * retransmitted later would), and new connections are accepted but get no
 * answer; when the partition ends, forwarding resumes. Runs in its own thread. */
#ifndef OTASIM_NETPROXY_H
#define OTASIM_NETPROXY_H

#include "ota/err.h"

#ifdef __cplusplus
extern "C" {
#endif

struct otasim_proxy;

/* Listens on 127.0.0.1:0 and forwards to 127.0.0.1:target_port. */
int otasim_proxy_start(int target_port, struct otasim_proxy **ret, struct ota_err *err) OTA_MUST;
int otasim_proxy_port(const struct otasim_proxy *p);
void otasim_proxy_partition(struct otasim_proxy *p, int on);
/* Closes every connection (a reset), keeps listening. */
void otasim_proxy_reset_all(struct otasim_proxy *p);
/* Connections accepted, bytes forwarded each way. */
void otasim_proxy_stats(const struct otasim_proxy *p, unsigned long *conns, unsigned long long *up,
                        unsigned long long *down);
void otasim_proxy_stop(struct otasim_proxy *p);

#ifdef __cplusplus
}
#endif
#endif
