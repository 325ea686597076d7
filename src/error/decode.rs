//! What a pure decoder (`source::pgoutput`) reports for malformed input: the message part and
//! what was wrong with it. Definite: the same bytes never decode.

use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("pgoutput message is empty")]
    Empty,
    #[error("unknown pgoutput message tag 0x{0:02x}")]
    UnknownTag(u8),
    #[error("pgoutput {what}: need {need} more bytes, {have} left")]
    Short {
        what: &'static str,
        need: usize,
        have: usize,
    },
    #[error("pgoutput {what}: string is not NUL-terminated")]
    Unterminated { what: &'static str },
    #[error("pgoutput {what}: invalid UTF-8")]
    Utf8 { what: &'static str },
    #[error("pgoutput {what}: unexpected byte 0x{byte:02x}")]
    Unexpected { what: &'static str, byte: u8 },
    #[error("pgoutput {what}: negative count {count}")]
    NegativeCount { what: &'static str, count: i64 },
    #[error("pgoutput message has {0} trailing bytes")]
    Trailing(usize),
}
