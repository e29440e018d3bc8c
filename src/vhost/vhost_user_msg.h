/* SPDX-License-Identifier: BSD-2-Clause */
/**
 * @file vhost_user_msg.h
 * @brief The one vhost-user message codec, used by the frontend and the backend library.
 *
 * A message is read or written whole: a 12-byte header, then exactly the payload
 * size the header announces, with up to VHOST_USER_MAX_FDS descriptors passed as
 * SCM_RIGHTS. Both directions are checked against one table of rules per request
 * (vhost_user_msg_check()): the exact payload size (or, for the memory table and
 * the config payload, the size implied by their count field, itself bounded), the
 * number of descriptors, the flags. A message that breaks a rule is refused as a
 * whole and every descriptor that came with it is closed, so a peer can neither
 * make us use half a message nor leak descriptors into us.
 *
 * **No waiting without a bound.** Every call takes an absolute deadline on the
 * monotonic clock (os_monotonic_ns()). Sockets are used with MSG_DONTWAIT and poll(),
 * so a peer that stops reading or writing half-way costs at most the time to the
 * deadline, whatever the socket's own O_NONBLOCK flag. SIGPIPE is never raised.
 *
 * **Errors** (negative errno values):
 *  - -ETIMEDOUT   the deadline passed before the whole message moved.
 *  - -ECONNRESET  the peer is gone (EOF, also in the middle of a message; EPIPE).
 *  - -EMSGSIZE    the header announces more than VHOST_USER_PAYLOAD_MAX bytes; the
 *                 payload is left unread, so the stream is out of step: drop the
 *                 connection.
 *  - -EPROTO      bad flags: version other than 1, a reply without the REPLY bit or a
 *                 request with it, NEED_REPLY on a reply, unknown bits.
 *  - -EOPNOTSUPP  a request with a code this codec does not know. The message was
 *                 consumed whole, so the stream is still in step; @c hdr tells whether
 *                 the peer wants a (negative) acknowledgement. A reply with an unknown
 *                 code is held to the acknowledgement's rule (a u64, no descriptor).
 *  - -EBADMSG     the payload size or the number of descriptors is not what the
 *                 request requires, a count field is out of range, or the kernel
 *                 had to drop descriptors (more than VHOST_USER_MAX_FDS).
 * After any error the message's descriptors are closed and @c nr_fds is 0; after
 * -EMSGSIZE, -EPROTO, -EOPNOTSUPP and -EBADMSG @c hdr holds the header as received.
 */
#ifndef BULKHEAD_VHOST_VHOST_USER_MSG_H
#define BULKHEAD_VHOST_VHOST_USER_MSG_H

#include "vhost/vhost_user.h"

#include <stdbool.h>
#include <stdint.h>

/**
 * One message with its descriptors. After a successful vhost_user_recv() the caller
 * owns @c fds[0 .. nr_fds) and must close or keep each (vhost_user_msg_close_fds()).
 * vhost_user_send() never closes the descriptors it passes.
 */
struct vhost_user_msg {
    struct vhost_user_hdr hdr;        /**< Header; hdr.size bytes of payload are meaningful. */
    union vhost_user_payload payload; /**< Payload, at most VHOST_USER_PAYLOAD_MAX bytes used. */
    int fds[VHOST_USER_MAX_FDS];      /**< Descriptors sent or received with the message. */
    unsigned nr_fds;                  /**< Valid entries of @c fds. */
};

/**
 * Start a message: version 1 flags, no descriptor, a zeroed payload of @p size bytes.
 * @param msg the message.
 * @param request an enum vhost_user_request value.
 * @param size payload bytes; vhost_user_send() refuses more than VHOST_USER_PAYLOAD_MAX.
 */
void vhost_user_msg_init(struct vhost_user_msg *msg, uint32_t request, uint32_t size);

/**
 * Check a complete message against the rules of its request: flags, payload size,
 * count fields, number of descriptors. The same rules apply to what we send and to
 * what we receive, so the two sides cannot drift apart.
 * @param msg the message (hdr, payload and nr_fds).
 * @param reply whether @p msg is a reply (backend to frontend) rather than a request.
 * @return 0; -EMSGSIZE, -EPROTO, -EOPNOTSUPP or -EBADMSG as in the file comment.
 */
int vhost_user_msg_check(const struct vhost_user_msg *msg, bool reply);

/**
 * Send one message, descriptors attached to its first byte. The message is checked
 * with vhost_user_msg_check() first: we never put a malformed message on the wire.
 * @param sock a connected unix stream socket.
 * @param msg the message; the REPLY flag in its header says which rules apply.
 * @param deadline_ns absolute monotonic deadline (vhost_user_deadline()).
 * @return 0; -EINVAL when @p msg breaks the rules (a bug of the caller); -ETIMEDOUT,
 *         -ECONNRESET, or another negative errno from sendmsg()/poll().
 */
int vhost_user_send(int sock, const struct vhost_user_msg *msg, uint64_t deadline_ns);

/**
 * Receive one whole message and check it. Reads exactly the header, then exactly the
 * announced payload, never a byte of the next message.
 * @param sock a connected unix stream socket.
 * @param msg receives the message; on success the caller owns its descriptors.
 * @param reply whether a reply is expected (the frontend) or a request (the backend).
 * @param deadline_ns absolute monotonic deadline.
 * @return 0; -ETIMEDOUT, -ECONNRESET, -EMSGSIZE, -EPROTO, -EOPNOTSUPP, -EBADMSG (file
 *         comment), or another negative errno from recvmsg()/poll().
 */
int vhost_user_recv(int sock, struct vhost_user_msg *msg, bool reply, uint64_t deadline_ns);

/**
 * Close every descriptor the message holds and forget them.
 * @param msg the message.
 */
void vhost_user_msg_close_fds(struct vhost_user_msg *msg);

/**
 * Absolute deadline @p timeout_ns from now, saturating instead of wrapping.
 * @param timeout_ns nanoseconds from now.
 * @return the deadline for vhost_user_send() / vhost_user_recv().
 */
uint64_t vhost_user_deadline(uint64_t timeout_ns);

/**
 * Name of a request for log lines.
 * @param request a request code, possibly one the peer made up.
 * @return a static string ("unknown" for codes the codec does not know).
 */
const char *vhost_user_request_name(uint32_t request);

#endif
