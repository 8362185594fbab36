//! The digest of a session's frames, sent with `SESSION_END` so that the server can prove it
//! stored exactly the frames the client sent, in order, and say which ones differ.
//!
//! The frames are cut into blocks of [`BLOCK_FRAMES`] frames; each block's digest is the
//! CRC32C of the little-endian CRC32C values of its frames' payloads, in order, written as 8
//! hex digits (lowercase when written; either case is read). Each frame's CRC32C is already in
//! its header.

use std::ops::Range;

use serde::{Deserialize, Serialize};

/// Frames per digest block.
pub const BLOCK_FRAMES: u64 = 1024;

/// The digest of a sequence of frames.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FrameDigest {
    /// Frames per block: always [`BLOCK_FRAMES`] in protocol version 1.
    pub block_frames: u64,
    /// One 8-hex-digit digest per block; the last block may be short.
    pub blocks: Vec<String>,
}

/// Builds a [`FrameDigest`] from the frames' CRC32C values, in order.
#[derive(Debug, Clone, Default)]
pub struct DigestBuilder {
    blocks: Vec<String>,
    current: u32,
    in_block: u64,
}

impl DigestBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the next frame, by its payload's CRC32C.
    pub fn push(&mut self, frame_crc32c: u32) {
        self.current = crc32c::crc32c_append(self.current, &frame_crc32c.to_le_bytes());
        self.in_block += 1;
        if self.in_block == BLOCK_FRAMES {
            self.close_block();
        }
    }

    fn close_block(&mut self) {
        self.blocks.push(format!("{:08x}", self.current));
        self.current = 0;
        self.in_block = 0;
    }

    pub fn finish(mut self) -> FrameDigest {
        if self.in_block > 0 {
            self.close_block();
        }
        FrameDigest {
            block_frames: BLOCK_FRAMES,
            blocks: self.blocks,
        }
    }
}

impl FrameDigest {
    /// The digest of frames with these payload CRC32C values.
    pub fn of(crcs: impl IntoIterator<Item = u32>) -> Self {
        let mut builder = DigestBuilder::new();
        crcs.into_iter().for_each(|crc| builder.push(crc));
        builder.finish()
    }

    /// The frame ranges of `frames` frames where `self` and `other` differ, merged; empty
    /// when they agree. Blocks missing on either side count as differing.
    pub fn differing_frames(&self, other: &FrameDigest, frames: u64) -> Vec<Range<u64>> {
        if self.block_frames != other.block_frames {
            return std::iter::once(0..frames).collect();
        }
        let n = self.blocks.len().max(other.blocks.len());
        let mut ranges: Vec<Range<u64>> = Vec::new();
        for i in 0..n {
            let same = match (self.blocks.get(i), other.blocks.get(i)) {
                (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
                _ => false,
            };
            if same {
                continue;
            }
            let start = i as u64 * self.block_frames;
            let end = (start + self.block_frames).min(frames.max(start + 1));
            match ranges.last_mut() {
                Some(last) if last.end == start => last.end = end,
                _ => ranges.push(start..end),
            }
        }
        ranges
    }
}

impl FrameDigest {
    /// Checks the digest's form for a session of `frames` frames: blocks of [`BLOCK_FRAMES`],
    /// one per started block, each 8 hex digits. Returns why it is not well formed.
    pub fn check_form(&self, frames: u64) -> Result<(), String> {
        if self.block_frames != BLOCK_FRAMES {
            return Err(format!(
                "digest.block_frames is {}, but protocol version 1 uses {BLOCK_FRAMES}",
                self.block_frames
            ));
        }
        let expected = frames.div_ceil(BLOCK_FRAMES);
        if self.blocks.len() as u64 != expected {
            return Err(format!(
                "digest.blocks has {} blocks, but {frames} frames make {expected}",
                self.blocks.len()
            ));
        }
        match self
            .blocks
            .iter()
            .position(|b| b.len() != 8 || !b.bytes().all(|c| c.is_ascii_hexdigit()))
        {
            Some(i) => Err(format!(
                "digest block {i} is {}, not 8 hex digits",
                crate::text::quoted(&self.blocks[i])
            )),
            None => Ok(()),
        }
    }
}

/// Formats frame ranges for people: `frames 0-1023 and 4096-4100`.
pub fn describe_ranges(ranges: &[Range<u64>]) -> String {
    let parts: Vec<String> = ranges
        .iter()
        .map(|r| {
            if r.end - r.start == 1 {
                format!("{}", r.start)
            } else {
                format!("{}-{}", r.start, r.end - 1)
            }
        })
        .collect();
    format!("frames {}", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_frames_give_equal_digests() {
        let crcs: Vec<u32> = (0..3000).map(|i| i * 7919).collect();
        let a = FrameDigest::of(crcs.iter().copied());
        assert_eq!(a.blocks.len(), 3);
        assert_eq!(a, FrameDigest::of(crcs.iter().copied()));
        assert!(a.differing_frames(&a, 3000).is_empty());
    }

    #[test]
    fn a_changed_frame_names_its_block() {
        let crcs: Vec<u32> = (0..3000).collect();
        let mut changed = crcs.clone();
        changed[1500] ^= 1;
        let a = FrameDigest::of(crcs);
        let b = FrameDigest::of(changed);
        let diff = a.differing_frames(&b, 3000);
        assert_eq!(diff, std::iter::once(1024..2048).collect::<Vec<_>>());
        assert_eq!(describe_ranges(&diff), "frames 1024-2047");
    }

    #[test]
    fn order_matters() {
        assert_ne!(FrameDigest::of([1, 2]), FrameDigest::of([2, 1]));
    }

    #[test]
    fn upper_case_hex_reads_the_same_and_bad_forms_are_named() {
        let digest = FrameDigest::of([1, 2, 3]);
        let upper = FrameDigest {
            blocks: digest.blocks.iter().map(|b| b.to_uppercase()).collect(),
            ..digest.clone()
        };
        assert!(digest.differing_frames(&upper, 3).is_empty());
        assert_eq!(upper.check_form(3), Ok(()));
        assert!(digest
            .check_form(2000)
            .unwrap_err()
            .contains("2000 frames make 2"));
        let bad = FrameDigest {
            blocks: vec!["xyz".into()],
            ..digest
        };
        assert!(bad
            .check_form(3)
            .unwrap_err()
            .contains("block 0 is \"xyz\""));
    }
}
