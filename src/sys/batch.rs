//! Batched UDP receive and send (`recvmmsg` / `sendmmsg`, Linux).
//!
//! A [`Batch`] owns fixed buffers for up to [`BATCH`] datagrams. [`Batch::receive`] fills them
//! with one system call (blocking for the first datagram up to the socket's read timeout, then
//! taking whatever else is queued); [`Sender::send_all`] sends a list of replies with as few
//! calls as the kernel allows. Both keep their buffers between calls: nothing is allocated per
//! batch.
//!
//! Safety argument, for every `unsafe` block here: the `mmsghdr`, `iovec` and address arrays
//! all live in the `Batch` or the `Sender` (fixed arrays of `BATCH` entries, boxed so they do
//! not move), or in the caller's slices borrowed for the call, and every pointer handed to the
//! kernel points into them and stays valid for the duration of the call; the kernel writes at
//! most `iov_len` bytes into each buffer and at most `msg_namelen` bytes into each address, and
//! reports the lengths it wrote, which are checked before use. Socket options are passed as a
//! local `c_int` with its size.

#![allow(unsafe_code)]

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::AsRawFd;

/// Datagrams taken per system call: room for what arrives while a worker holds under load
/// (`dns::udp`, receive coalescing: about 20 at 130k queries per second on one worker).
pub const BATCH: usize = 64;
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

/// Has the kernel send this IPv4 UDP socket's datagrams with the Don't Fragment bit
/// (`IP_PMTUDISC_PROBE`: DF set, ICMP "fragmentation needed" ignored, so a forged one cannot
/// lower what is sent). A datagram larger than the interface's MTU then fails to send instead
/// of going out in fragments: only for sockets whose datagrams stay far below any MTU. The
/// kernel also skips choosing an IP ID for each datagram (it is 0 with DF).
pub fn send_unfragmented_v4(socket: &impl AsRawFd) -> io::Result<()> {
    let mode: libc::c_int = libc::IP_PMTUDISC_PROBE;
    // SAFETY: `mode` is a c_int that outlives the call, and the length passed is its size; the
    // kernel only reads it.
    let result = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_MTU_DISCOVER,
            (&raw const mode).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if result < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Send headers for up to [`BATCH`] replies, kept between calls so a steady stream of
/// batches allocates nothing.
pub struct Sender {
    addresses: Box<[RawAddress; BATCH]>,
    iovecs: Box<[libc::iovec; BATCH]>,
    headers: Box<[libc::mmsghdr; BATCH]>,
}

/// A destination as the kernel reads it: IPv4 or IPv6, written in place (no conversion through
/// a 128-byte `sockaddr_storage`).
#[derive(Clone, Copy)]
#[repr(C)]
union RawAddress {
    v4: libc::sockaddr_in,
    v6: libc::sockaddr_in6,
}

impl RawAddress {
    /// Writes `address` here; returns the length of what was written.
    fn set(&mut self, address: SocketAddr) -> libc::socklen_t {
        match address {
            SocketAddr::V4(v4) => {
                self.v4 = libc::sockaddr_in {
                    sin_family: libc::AF_INET as libc::sa_family_t,
                    sin_port: v4.port().to_be(),
                    sin_addr: libc::in_addr {
                        s_addr: u32::from(*v4.ip()).to_be(),
                    },
                    sin_zero: [0; 8],
                };
                size_of::<libc::sockaddr_in>() as libc::socklen_t
            }
            SocketAddr::V6(v6) => {
                self.v6 = libc::sockaddr_in6 {
                    sin6_family: libc::AF_INET6 as libc::sa_family_t,
                    sin6_port: v6.port().to_be(),
                    sin6_flowinfo: v6.flowinfo(),
                    sin6_addr: libc::in6_addr {
                        s6_addr: v6.ip().octets(),
                    },
                    sin6_scope_id: v6.scope_id(),
                };
                size_of::<libc::sockaddr_in6>() as libc::socklen_t
            }
        }
    }
}

impl Default for Sender {
    fn default() -> Self {
        // SAFETY: all-zero bytes are valid values of these plain C structs and of the union of
        // two of them (null pointers, zero lengths, family 0); they are filled in before every
        // call.
        let (addresses, iovecs, headers) = unsafe { (zeroed(), zeroed(), zeroed()) };
        Self {
            addresses: Box::new(addresses),
            iovecs: Box::new(iovecs),
            headers: Box::new(headers),
        }
    }
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
        for (i, (reply, to)) in replies[..count].iter().enumerate() {
            let address_len = self.addresses[i].set(*to);
            self.iovecs[i] = libc::iovec {
                iov_base: reply.as_ptr().cast_mut().cast(),
                iov_len: reply.len(),
            };
            let header = &mut self.headers[i].msg_hdr;
            header.msg_name = (&raw mut self.addresses[i]).cast();
            header.msg_namelen = address_len;
            header.msg_iov = &raw mut self.iovecs[i];
            header.msg_iovlen = 1;
            // No control data, no flags: left zero since `default`.
        }
        // SAFETY: the first `count` headers point into `self.addresses`, `self.iovecs` and the
        // caller's reply buffers, none of which is touched until this call returns; the kernel
        // only reads them (and writes `msg_len`).
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
        let clients = clients(5, "127.0.0.1:0");
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

    /// `count` client sockets bound to `address` (port 0).
    fn clients(count: usize, address: &str) -> Vec<UdpSocket> {
        (0..count)
            .map(|_| UdpSocket::bind(address).unwrap())
            .collect()
    }

    /// Sends a reply of its own from `server` to each of `clients` in one batch, and checks
    /// that each client got exactly its own, from the server's address.
    fn reply_to_each(server: &UdpSocket, clients: &[UdpSocket]) {
        let replies: Vec<(Vec<u8>, SocketAddr)> = clients
            .iter()
            .enumerate()
            .map(|(i, c)| (vec![i as u8; 100 + i], c.local_addr().unwrap()))
            .collect();
        assert_eq!(Sender::default().send_all(server, &replies), replies.len());
        for (i, client) in clients.iter().enumerate() {
            client
                .set_read_timeout(Some(Duration::from_secs(2)))
                .unwrap();
            let mut buffer = [0u8; 256];
            let (length, from) = client.recv_from(&mut buffer).unwrap();
            assert_eq!(&buffer[..length], &replies[i].0[..]);
            assert_eq!(from, server.local_addr().unwrap());
        }
    }

    #[test]
    fn replies_reach_ipv6_senders_too() {
        let Ok(server) = UdpSocket::bind("[::1]:0") else {
            eprintln!("no IPv6 loopback here: skipped");
            return;
        };
        let clients = clients(3, "[::1]:0");
        reply_to_each(&server, &clients);
    }

    #[test]
    fn unfragmented_sockets_set_df_and_still_send_small_replies() {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        send_unfragmented_v4(&server).unwrap();
        let mut mode: libc::c_int = -1;
        let mut length = size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: `mode` and `length` outlive the call; the kernel writes at most `length`
        // bytes into `mode` and the length it wrote into `length`.
        let result = unsafe {
            libc::getsockopt(
                server.as_raw_fd(),
                libc::IPPROTO_IP,
                libc::IP_MTU_DISCOVER,
                (&raw mut mode).cast(),
                &raw mut length,
            )
        };
        assert_eq!(result, 0);
        assert_eq!(mode, libc::IP_PMTUDISC_PROBE);
        let clients = clients(3, "127.0.0.1:0");
        reply_to_each(&server, &clients);
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
