//! R12, once: how a response too big for its transport is cut down, for both answer paths.
//!
//! The rule: first the additional section goes (glue is a convenience); if the response is
//! still too big, whole answer RRsets go from the last one, TC is set and the authority
//! section goes with them, so the client retries over TCP; a response that cannot fit even so
//! is the caller's to replace. TC is never set when only additional records were dropped.
//!
//! The general path (`message.rs`) cuts hickory records and re-encodes; the direct path
//! (`direct/`) cuts bytes it wrote; both through [`Cuttable`], so the order of the cuts and
//! when TC is set are decided here alone.
//!
//! Invariant: [`cut_to_fit`] stops at the first state that fits; the OPT record is never cut
//! (it is part of every size measured).

/// A response being written, which [`cut_to_fit`] can measure and cut.
pub trait Cuttable {
    /// Its size in bytes now, OPT record included; `usize::MAX` when it cannot be written.
    fn size(&mut self) -> usize;
    /// Drops the additional section (the OPT record stays).
    fn drop_additional(&mut self);
    /// Drops the last RRset of the answer section and the authority section, and sets TC;
    /// `false` (and nothing changed) when the answer section is empty.
    fn drop_last_answer_rrset(&mut self) -> bool;
}

/// Cuts `response` down to `limit` bytes by the R12 rule; returns whether it fits.
pub fn cut_to_fit(response: &mut impl Cuttable, limit: usize) -> bool {
    if response.size() <= limit {
        return true;
    }
    response.drop_additional();
    while response.size() > limit {
        if !response.drop_last_answer_rrset() {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sections as sizes: answer RRsets, authority, additional, and TC.
    #[derive(Debug, Default, PartialEq)]
    struct Sizes {
        rrsets: Vec<usize>,
        authority: usize,
        additional: usize,
        truncated: bool,
    }

    impl Cuttable for Sizes {
        fn size(&mut self) -> usize {
            12 + self.rrsets.iter().sum::<usize>() + self.authority + self.additional
        }
        fn drop_additional(&mut self) {
            self.additional = 0;
        }
        fn drop_last_answer_rrset(&mut self) -> bool {
            if self.rrsets.pop().is_none() {
                return false;
            }
            self.authority = 0;
            self.truncated = true;
            true
        }
    }

    fn sizes(rrsets: &[usize], authority: usize, additional: usize) -> Sizes {
        Sizes {
            rrsets: rrsets.to_vec(),
            authority,
            additional,
            truncated: false,
        }
    }

    #[test]
    fn cuts_glue_first_then_whole_rrsets_with_tc() {
        let cases = [
            // (answers, authority, additional, limit) -> (fits, rrsets left, additional, TC)
            ((vec![100], 0, 100, 512), (true, 1, 100, false)),
            ((vec![100], 0, 500, 512), (true, 1, 0, false)),
            ((vec![300, 300], 0, 100, 512), (true, 1, 0, true)),
            ((vec![600], 50, 100, 512), (true, 0, 0, true)),
            ((vec![], 600, 0, 512), (false, 0, 0, false)),
        ];
        for ((rrsets, authority, additional, limit), want) in cases {
            let mut response = sizes(&rrsets, authority, additional);
            let fits = cut_to_fit(&mut response, limit);
            let got = (
                fits,
                response.rrsets.len(),
                response.additional,
                response.truncated,
            );
            assert_eq!(got, want, "{rrsets:?} {authority} {additional} in {limit}");
        }
    }
}
