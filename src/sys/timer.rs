//! The calling thread's timer slack: how much later than asked the kernel may end the
//! thread's timed sleeps (Linux `PR_SET_TIMERSLACK`, 50 us by default), so that it can serve
//! several timers with one interrupt.
//!
//! A UDP worker that holds for a few dozen microseconds under load (`dns::udp`, receive
//! coalescing) sets its slack to a microsecond, so the hold lasts what its setting says and
//! not up to 50 us more. The setting is per thread: it changes no other thread's sleeps.
//!
//! Safety argument: `prctl` with `PR_SET_TIMERSLACK` / `PR_GET_TIMERSLACK` takes and returns
//! plain integers and reads or writes no memory of ours.

#![allow(unsafe_code)]

use std::io;
use std::time::Duration;

/// Sets the calling thread's timer slack to `slack` (at least 1 ns: 0 would mean "the
/// default" to the kernel, so it is raised to 1 ns).
pub fn set_timer_slack(slack: Duration) -> io::Result<()> {
    let nanos = libc::c_ulong::try_from(slack.as_nanos())
        .unwrap_or(libc::c_ulong::MAX)
        .max(1);
    let unused: libc::c_ulong = 0;
    // SAFETY: PR_SET_TIMERSLACK takes its value as the second argument and reads no memory;
    // the others are unused and passed as zero, as prctl(2) asks.
    let result = unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, nanos, unused, unused, unused) };
    if result < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The calling thread's timer slack.
pub fn timer_slack() -> io::Result<Duration> {
    let unused: libc::c_ulong = 0;
    // SAFETY: PR_GET_TIMERSLACK returns the slack in nanoseconds and reads no memory.
    let result = unsafe { libc::prctl(libc::PR_GET_TIMERSLACK, unused, unused, unused, unused) };
    if result < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(Duration::from_nanos(result as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_slack_set_is_the_calling_threads_alone() {
        let before = timer_slack().expect("read the slack");
        let set = std::thread::spawn(|| {
            set_timer_slack(Duration::from_micros(1)).expect("set the slack");
            timer_slack().expect("read the slack")
        })
        .join()
        .expect("thread");
        assert_eq!(set, Duration::from_micros(1));
        assert_eq!(timer_slack().expect("read the slack"), before);
    }

    #[test]
    fn a_zero_slack_becomes_one_nanosecond_not_the_default() {
        let set = std::thread::spawn(|| {
            set_timer_slack(Duration::ZERO).expect("set the slack");
            timer_slack().expect("read the slack")
        })
        .join()
        .expect("thread");
        assert_eq!(set, Duration::from_nanos(1));
    }
}
