//! Batched UDP receive and send (`recvmmsg` / `sendmmsg`, Linux).
//!
//! A [`Batch`] owns fixed buffers for up to [`BATCH`] datagrams. [`Batch::receive`] fills them
//! with one system call (blocking for the first datagram up to the socket's read timeout, then
//! taking whatever else is queued); [`Sender::send_all`] sends a list of replies with as few
//! calls as the kernel allows. Both keep their buffers between calls: nothing is allocated per
//! batch.
//!
//! Safety argument, for every `unsafe` block here: the `mmsghdr`, `iovec` and address arrays
//! all live in the `Batch` or the `Sender` (whose vectors are filled completely before any
//! pointer into them is taken), or in the caller's slices borrowed for the call, hold at most
//! `BATCH` entries, and every pointer handed to the kernel points into them and stays
//! valid for the duration of the call; the kernel writes at most `iov_len` bytes into each
//! buffer and at most `msg_namelen` bytes into each address, and reports the lengths it wrote,
//! which are checked before use.

#![allow(unsafe_code)]

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::AsRawFd;

use socket2::SockAddr;

/// Datagrams taken per system call.
pub const BATCH: usize = 32;
/// Largest datagram received; anything longer arrives cut (and gets FORMERR).
pub const DATAGRAM: usize = 4096;

/// Receive buffers for one socket.
pub struct Batch {
    buffers: Box<[[u8; DATAGRAM]; BATCH]>,
    addresses: Box<[libc::sockaddr_storage; BATCH]>,
    iovecs: Box<[libc::iovec; BATCH]>,
    headers: Box<[libc::mmsghdr; BATCH]>,
    received: usize,
}

impl std::fmt::Debug for Batch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batch")
            .field("received", &self.received)
            .finish()
    }
}

impl Default for Batch {
    fn default() -> Self {
        // SAFETY: all-zero bytes are valid values of these plain C structs (null pointers and
        // zero lengths); they are filled in before every call.
        let (addresses, iovecs, headers) = unsafe { (zeroed(), zeroed(), zeroed()) };
        Self {
            buffers: Box::new([[0; DATAGRAM]; BATCH]),
            addresses: Box::new(addresses),
            iovecs: Box::new(iovecs),
            headers: Box::new(headers),
            received: 0,
        }
    }
}

impl Batch {
    /// Receives up to [`BATCH`] datagrams; returns how many. Blocks for the first one up to
    /// the socket's read timeout (then `WouldBlock` / `TimedOut`).
    pub fn receive(&mut self, socket: &impl AsRawFd) -> io::Result<usize> {
        for i in 0..BATCH {
            self.iovecs[i] = libc::iovec {
                iov_base: self.buffers[i].as_mut_ptr().cast(),
                iov_len: DATAGRAM,
            };
            // SAFETY: an all-zero msghdr is valid; the fields the kernel reads are set below.
            let mut header: libc::msghdr = unsafe { zeroed() };
            header.msg_name = (&raw mut self.addresses[i]).cast();
            header.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            header.msg_iov = &raw mut self.iovecs[i];
            header.msg_iovlen = 1;
            self.headers[i] = libc::mmsghdr {
                msg_hdr: header,
                msg_len: 0,
            };
        }
        // SAFETY: see the module doc: every pointer points into `self`, sized for BATCH.
        let count = unsafe {
            libc::recvmmsg(
                socket.as_raw_fd(),
                self.headers.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if count < 0 {
            self.received = 0;
            return Err(io::Error::last_os_error());
        }
        self.received = count as usize;
        Ok(self.received)
    }

    /// Datagram `i` of the last receive, with its sender; `None` past the count or for a sender
    /// that is not IPv4 or IPv6.
    pub fn datagram(&self, i: usize) -> Option<(&[u8], SocketAddr)> {
        if i >= self.received {
            return None;
        }
        let header = &self.headers[i];
        let length = (header.msg_len as usize).min(DATAGRAM);
        let address = socket_address(&self.addresses[i], header.msg_hdr.msg_namelen)?;
        Some((&self.buffers[i][..length], address))
    }
}

/// Reads the sender address the kernel wrote into `storage` (`length` bytes of it).
fn socket_address(storage: &libc::sockaddr_storage, length: libc::socklen_t) -> Option<SocketAddr> {
    let length = length as usize;
    match i32::from(storage.ss_family) {
        libc::AF_INET if length >= size_of::<libc::sockaddr_in>() => {
            // SAFETY: the family says the storage holds a sockaddr_in, and sockaddr_storage is
            // large and aligned enough for every address type.
            let v4 = unsafe { &*(std::ptr::from_ref(storage).cast::<libc::sockaddr_in>()) };
            let ip = Ipv4Addr::from(u32::from_be(v4.sin_addr.s_addr));
            Some(SocketAddr::V4(SocketAddrV4::new(
                ip,
                u16::from_be(v4.sin_port),
            )))
        }
        libc::AF_INET6 if length >= size_of::<libc::sockaddr_in6>() => {
            // SAFETY: as above, for sockaddr_in6.
            let v6 = unsafe { &*(std::ptr::from_ref(storage).cast::<libc::sockaddr_in6>()) };
            let ip = Ipv6Addr::from(v6.sin6_addr.s6_addr);
            let port = u16::from_be(v6.sin6_port);
            Some(SocketAddr::V6(SocketAddrV6::new(
                ip,
                port,
                v6.sin6_flowinfo,
                v6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// Send headers for up to [`BATCH`] replies, kept between calls so a steady stream of
/// batches allocates nothing.
#[derive(Default)]
pub struct Sender {
    addresses: Vec<SockAddr>,
    iovecs: Vec<libc::iovec>,
    headers: Vec<libc::mmsghdr>,
}

impl std::fmt::Debug for Sender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender").finish_non_exhaustive()
    }
}

impl Sender {
    /// Sends every `(reply, destination)`, batching system calls; returns how many were sent.
    /// A reply the kernel refuses (say, an unreachable destination) is skipped, not retried.
    pub fn send_all(&mut self, socket: &impl AsRawFd, replies: &[(Vec<u8>, SocketAddr)]) -> usize {
        let mut sent = 0;
        while sent < replies.len() {
            match self.send_some(socket, &replies[sent..]) {
                Ok(0) => sent += 1,
                Ok(count) => sent += count,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => sent += 1, // skip the reply that failed
            }
        }
        sent
    }

    fn send_some(
        &mut self,
        socket: &impl AsRawFd,
        replies: &[(Vec<u8>, SocketAddr)],
    ) -> io::Result<usize> {
        let count = replies.len().min(BATCH);
        let replies = &replies[..count];
        self.addresses.clear();
        self.addresses
            .extend(replies.iter().map(|(_, to)| SockAddr::from(*to)));
        self.iovecs.clear();
        self.iovecs
            .extend(replies.iter().map(|(reply, _)| libc::iovec {
                iov_base: reply.as_ptr().cast_mut().cast(),
                iov_len: reply.len(),
            }));
        self.headers.clear();
        for (address, iovec) in self.addresses.iter().zip(self.iovecs.iter_mut()) {
            // SAFETY: an all-zero msghdr is valid; the fields the kernel reads are set below.
            let mut header: libc::msghdr = unsafe { zeroed() };
            header.msg_name = address.as_ptr().cast_mut().cast();
            header.msg_namelen = address.len();
            header.msg_iov = iovec;
            header.msg_iovlen = 1;
            self.headers.push(libc::mmsghdr {
                msg_hdr: header,
                msg_len: 0,
            });
        }
        // SAFETY: the headers point into `self.addresses`, `self.iovecs` and the caller's
        // reply buffers, none of which is touched until this call returns; the kernel only
        // reads them. `count` is the number of headers.
        let result = unsafe {
            libc::sendmmsg(
                socket.as_raw_fd(),
                self.headers.as_mut_ptr(),
                count as libc::c_uint,
                0,
            )
        };
        if result < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(result as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::time::Duration;

    #[test]
    fn a_batch_receives_several_datagrams_and_replies_reach_their_senders() {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        server
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let clients: Vec<UdpSocket> = (0..5)
            .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
            .collect();
        for (i, client) in clients.iter().enumerate() {
            client
                .send_to(&[i as u8; 3], server.local_addr().unwrap())
                .unwrap();
        }
        let mut batch = Batch::default();
        let mut seen = Vec::new();
        while seen.len() < clients.len() {
            let count = batch.receive(&server).unwrap();
            for i in 0..count {
                let (bytes, from) = batch.datagram(i).unwrap();
                seen.push((bytes.to_vec(), from));
            }
        }
        assert!(batch.datagram(BATCH).is_none());
        let replies: Vec<(Vec<u8>, SocketAddr)> = seen
            .iter()
            .map(|(bytes, from)| (bytes.iter().map(|b| b + 100).collect(), *from))
            .collect();
        assert_eq!(Sender::default().send_all(&server, &replies), replies.len());
        for (i, client) in clients.iter().enumerate() {
            client
                .set_read_timeout(Some(Duration::from_secs(2)))
                .unwrap();
            let mut buffer = [0u8; 16];
            let (length, _) = client.recv_from(&mut buffer).unwrap();
            assert_eq!(&buffer[..length], &[i as u8 + 100; 3]);
        }
    }

    #[test]
    fn an_idle_socket_times_out_instead_of_blocking_forever() {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        server
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let error = Batch::default().receive(&server).unwrap_err();
        assert!(
            matches!(
                error.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ),
            "{error}"
        );
    }
}
