//! Decoding a `Transfer-Encoding: chunked` response body, fed in whatever pieces the socket
//! gives: only what the response snippet needs, and where the body ends, so the connection can
//! be used again.

/// Where the decoder is in the chunked body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Reading a chunk-size line's hex digits.
    Size {
        size: u64,
        digits: u8,
    },
    /// After the digits: skipping a chunk extension up to the line's end.
    SizeLine {
        size: u64,
    },
    /// Inside a chunk's data, with this many bytes left.
    Data(u64),
    /// After a chunk's data: its CR LF.
    DataEnd {
        seen_cr: bool,
    },
    /// After the last chunk: at the start of a trailer line (or of the final empty line).
    TrailerStart,
    /// Inside a trailer line.
    Trailer,
    /// After the final empty line's CR.
    FinalLf,
    Done,
}

/// A chunked body decoder.
#[derive(Debug)]
pub(super) struct Chunked {
    state: State,
}

impl Chunked {
    pub(super) fn new() -> Self {
        Self {
            state: State::Size { size: 0, digits: 0 },
        }
    }

    /// Whether the whole body, trailers included, has been read.
    pub(super) fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Decodes `input`, appending data to `out` until it holds `limit` bytes (the rest is
    /// read and dropped). Bytes after the end of the body are an error: nothing may follow a
    /// response on an HTTP/1.1 connection until the next request.
    pub(super) fn feed(
        &mut self,
        mut input: &[u8],
        out: &mut Vec<u8>,
        limit: usize,
    ) -> Result<(), &'static str> {
        while let Some(&byte) = input.first() {
            let mut used = 1;
            self.state = match self.state {
                State::Size { size, digits } => match (byte as char).to_digit(16) {
                    Some(digit) if digits < 15 => State::Size {
                        size: size * 16 + u64::from(digit),
                        digits: digits + 1,
                    },
                    Some(_) => return Err("a chunk size is too large"),
                    None if digits == 0 => return Err("a chunk size is missing"),
                    None if byte == b'\n' => after_size(size),
                    None => State::SizeLine { size },
                },
                State::SizeLine { size } => match byte {
                    b'\n' => after_size(size),
                    _ => State::SizeLine { size },
                },
                State::Data(left) => {
                    let take = input.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                    let room = limit.saturating_sub(out.len()).min(take);
                    out.extend_from_slice(&input[..room]);
                    used = take;
                    match left - take as u64 {
                        0 => State::DataEnd { seen_cr: false },
                        rest => State::Data(rest),
                    }
                }
                State::DataEnd { seen_cr } => match byte {
                    b'\r' if !seen_cr => State::DataEnd { seen_cr: true },
                    b'\n' => State::Size { size: 0, digits: 0 },
                    _ => return Err("a chunk is longer than its size says"),
                },
                State::TrailerStart => match byte {
                    b'\r' => State::FinalLf,
                    b'\n' => State::Done,
                    _ => State::Trailer,
                },
                State::Trailer => match byte {
                    b'\n' => State::TrailerStart,
                    _ => State::Trailer,
                },
                State::FinalLf => match byte {
                    b'\n' => State::Done,
                    _ => return Err("the chunked body ends badly"),
                },
                State::Done => return Err("bytes after the end of the response"),
            };
            input = &input[used..];
        }
        Ok(())
    }
}

fn after_size(size: u64) -> State {
    if size == 0 {
        State::TrailerStart
    } else {
        State::Data(size)
    }
}

#[cfg(test)]
mod tests {
    use super::Chunked;

    const BODY: &[u8] = b"4\r\nWiki\r\n6;name=value\r\npedia \r\nE\r\nin \r\n\r\nchunks.\r\n0\r\nExpires: never\r\n\r\n";

    #[test]
    fn a_body_split_anywhere_decodes_to_the_same_text_and_ends_once() {
        for split in 0..=BODY.len() {
            let (first, second) = BODY.split_at(split);
            let mut decoder = Chunked::new();
            let mut out = Vec::new();
            decoder.feed(first, &mut out, 1024).unwrap();
            assert_eq!(decoder.is_done(), split == BODY.len());
            decoder.feed(second, &mut out, 1024).unwrap();
            assert!(decoder.is_done());
            assert_eq!(out, b"Wikipedia in \r\n\r\nchunks.", "split at {split}");
        }
    }

    #[test]
    fn data_past_the_limit_is_read_but_not_kept() {
        let mut decoder = Chunked::new();
        let mut out = Vec::new();
        decoder.feed(BODY, &mut out, 6).unwrap();
        assert!(decoder.is_done());
        assert_eq!(out, b"Wikipe");
    }

    #[test]
    fn malformed_bodies_are_errors_not_guesses() {
        for bad in [
            &b"zz\r\n"[..],
            b"\r\n",
            b"2\r\nabc\r\n",
            b"0\r\n\r\nextra",
            b"fffffffffffffffff\r\n",
        ] {
            let mut out = Vec::new();
            assert!(
                Chunked::new().feed(bad, &mut out, 100).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
