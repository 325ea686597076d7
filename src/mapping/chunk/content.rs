//! Content-defined chunk boundaries (`chunk = { max_tokens, chunking = "content" }`): cut where
//! the text says so, so that an edit moves only the boundaries near it.
//!
//! # Why an edit re-embeds only the chunks it touches
//!
//! Fixed windows cut every `max_tokens` tokens from the start: one sentence inserted near the
//! start shifts every later window, and every later chunk's text changes. Here a boundary is
//! decided by the text around it, never by its distance from the start:
//!
//! 1. **Paragraphs** (text separated by a blank line) always end a chunk.
//! 2. Within a paragraph, **sentences** (ending in `.`, `!` or `?` before whitespace, or at a
//!    line break) are the units. A sentence longer than `max_tokens` is cut into pieces by a
//!    **rolling hash over tokens**: after a token whose hash with the two before it is 0 mod 8
//!    (once the piece has `max_tokens / 2` tokens), or at `max_tokens`.
//! 3. Units are packed into a chunk in order; the chunk ends after a unit whose text hashes to
//!    0 mod 4 (a content-defined cut), before a unit that would take it past `max_tokens`, and
//!    at the paragraph's end.
//!
//! So a chunk's text depends only on its paragraph, and inside a paragraph a cut forced by the
//! size can move later cuts only up to the next content-defined one (a quarter of the sentences).
//! An edit in one paragraph leaves the chunks of every other paragraph as they were, byte for
//! byte; their points keep their ids (`mapping::key::content_chunk_uuid5`: the row, the chunk's
//! text, and how many chunks of the row before it have the same text), so their stored vectors
//! are reused and only the chunks whose text changed are embedded (`pipeline::embedding`).
//!
//! The hashes are FNV-1a (64-bit, fixed): boundaries are the same in every process and release.

use super::Tokens;

/// Chunks of `text`, in order (trimmed, none empty; an empty text is one empty chunk).
pub fn split<'a>(tokens: &Tokens, text: &'a str, max_tokens: usize) -> Vec<&'a str> {
    let mut out = Vec::new();
    for paragraph in paragraphs(text) {
        // Units as (start, end, tokens) in the paragraph.
        let mut units: Vec<(usize, usize, usize)> = Vec::new();
        let mut at = 0;
        for sentence in sentences(paragraph) {
            let spans = starts(tokens.spans(sentence));
            if spans.len() <= max_tokens {
                units.push((at, at + sentence.len(), spans.len()));
            } else {
                units.extend(
                    pieces(sentence, &spans, max_tokens)
                        .into_iter()
                        .map(|(a, b, n)| (at + a, at + b, n)),
                );
            }
            at += sentence.len();
        }
        pack(paragraph, &units, max_tokens, &mut out);
    }
    if out.is_empty() {
        out.push(text.trim());
    }
    out
}

/// Token spans with distinct starts (the word pieces of one word may share their bounds: they
/// count as one token here, a cut never falls inside a character or between equal starts).
fn starts(mut spans: Vec<(usize, usize)>) -> Vec<(usize, usize)> {
    spans.dedup_by(|next, kept| {
        let same = next.0 == kept.0;
        if same {
            kept.1 = kept.1.max(next.1);
        }
        same
    });
    spans
}

/// Consecutive units of one paragraph into chunks (rule 3 of the module doc).
fn pack<'a>(
    paragraph: &'a str,
    units: &[(usize, usize, usize)],
    max_tokens: usize,
    out: &mut Vec<&'a str>,
) {
    let mut push = |from: usize, to: usize| {
        let c = paragraph[from..to].trim();
        if !c.is_empty() {
            out.push(c);
        }
    };
    // The chunk being packed: (start, end, tokens).
    let mut chunk: Option<(usize, usize, usize)> = None;
    for &(a, b, n) in units {
        chunk = match chunk {
            Some((from, _, m)) if m + n <= max_tokens => Some((from, b, m + n)),
            Some((from, to, _)) => {
                push(from, to);
                Some((a, b, n))
            }
            None => Some((a, b, n)),
        };
        if fnv(paragraph[a..b].trim().as_bytes()).is_multiple_of(4) {
            if let Some((from, to, _)) = chunk.take() {
                push(from, to);
            }
        }
    }
    if let Some((from, to, _)) = chunk {
        push(from, to);
    }
}

/// The paragraphs of `text` (each with the blank lines after it), tiling it.
fn paragraphs(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut start, mut blank_seen, mut at) = (0, false, 0);
    for line in text.split_inclusive('\n') {
        let blank = line.trim().is_empty();
        if !blank && blank_seen && at > start {
            out.push(&text[start..at]);
            start = at;
        }
        blank_seen = blank && at > start;
        at += line.len();
    }
    if start < text.len() {
        out.push(&text[start..]);
    }
    out
}

/// The sentences of a paragraph (each with the whitespace after it), tiling it.
fn sentences(paragraph: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut chars = paragraph.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let ends = match c {
            '.' | '!' | '?' => chars.peek().is_some_and(|(_, n)| n.is_whitespace()),
            '\n' => true,
            _ => false,
        };
        if ends {
            // The whitespace after the end belongs to this sentence.
            let mut end = i + c.len_utf8();
            while let Some((j, n)) = chars.peek().copied() {
                if !n.is_whitespace() {
                    break;
                }
                end = j + n.len_utf8();
                chars.next();
            }
            out.push(&paragraph[start..end]);
            start = end;
        }
    }
    if start < paragraph.len() {
        out.push(&paragraph[start..]);
    }
    out
}

/// A sentence longer than `max_tokens` (its token `spans`) in pieces cut by a rolling hash
/// over tokens (rule 2 of the module doc): (start, end, tokens) in the sentence.
fn pieces(
    sentence: &str,
    spans: &[(usize, usize)],
    max_tokens: usize,
) -> Vec<(usize, usize, usize)> {
    let mut out = Vec::new();
    let (mut from, mut first) = (0, 0);
    for j in 0..spans.len() {
        let n = j + 1 - first;
        let window = &spans[j.saturating_sub(2)..=j];
        let h = window.iter().fold(FNV_OFFSET, |h, (a, b)| {
            fnv_more(h, &sentence.as_bytes()[*a..*b])
        });
        let last = j + 1 == spans.len();
        if last || n == max_tokens || (n >= max_tokens / 2 && h.is_multiple_of(8)) {
            let to = if last { sentence.len() } else { spans[j + 1].0 };
            out.push((from, to, n));
            from = to;
            first = j + 1;
        }
    }
    out
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

fn fnv_more(mut h: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

fn fnv(bytes: &[u8]) -> u64 {
    fnv_more(FNV_OFFSET, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` paragraphs of `per` sentences, each sentence distinct.
    fn document(n: usize, per: usize) -> String {
        (0..n)
            .map(|p| {
                (0..per)
                    .map(|s| {
                        format!(
                            "Paragraph {p} sentence {s} talks about topic {} in words.",
                            p * 31 + s
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect::<Vec<_>>()
            .join("\n\n")
    }

    fn split_words(text: &str, max: usize) -> Vec<&str> {
        split(&Tokens::default(), text, max)
    }

    #[test]
    fn chunks_tile_the_text_within_the_limit_and_never_cross_a_paragraph() {
        let text = document(6, 5);
        let chunks = split_words(&text, 24);
        let rejoined: String = chunks.join(" ");
        let words = |s: &str| s.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
        assert_eq!(words(&rejoined), words(&text), "every word once, in order");
        for c in &chunks {
            assert!(c.split_whitespace().count() <= 24, "{c}");
            assert!(!c.contains("\n\n"), "within one paragraph: {c}");
            assert!(!c.is_empty());
        }
        assert_eq!(split_words("", 8), [""]);
        assert_eq!(split_words("one", 8), ["one"]);
    }

    #[test]
    fn an_inserted_sentence_changes_only_its_paragraphs_chunks() {
        let text = document(8, 6);
        let before = split_words(&text, 30);
        let edited = text.replacen(
            "Paragraph 2 sentence 1 talks",
            "An inserted sentence is here. Paragraph 2 sentence 1 talks",
            1,
        );
        let after = split_words(&edited, 30);
        let changed: Vec<&&str> = after.iter().filter(|c| !before.contains(c)).collect();
        assert!(!changed.is_empty() && changed.len() <= 3, "{changed:#?}");
        assert!(changed
            .iter()
            .all(|c| c.contains("Paragraph 2") || c.contains("inserted")));
        // Fixed windows on the same edit: everything after it moves.
        let windows = crate::mapping::chunk::Splitter::load(
            &crate::config::ChunkConfig {
                max_tokens: 30,
                overlap: 0,
                chunking: Default::default(),
            },
            None,
        )
        .unwrap();
        let (wb, wa) = (windows.split(&text), windows.split(&edited));
        let moved = wa.iter().filter(|c| !wb.contains(c)).count();
        assert!(
            moved > changed.len() * 3,
            "windows {moved}, content {}",
            changed.len()
        );
    }

    #[test]
    fn a_sentence_longer_than_the_limit_is_cut_by_its_tokens() {
        let long = (0..100)
            .map(|i| format!("w{i}"))
            .collect::<Vec<_>>()
            .join(" ");
        let chunks = split_words(&long, 16);
        assert!(chunks.len() >= 7, "{chunks:?}");
        assert!(chunks.iter().all(|c| c.split_whitespace().count() <= 16));
        // A word added at the front moves the first cut at most: later cuts are content-defined.
        let edited = format!("w-new {long}");
        let after = split_words(&edited, 16);
        let same = after.iter().filter(|c| chunks.contains(c)).count();
        assert!(same + 3 >= chunks.len(), "{chunks:?}\n{after:?}");
    }

    #[test]
    fn any_text_splits_without_losing_a_word() {
        // Texts of pieces that stress the cuts: ends of sentences, blank lines, multibyte
        // characters, long runs without a break.
        let pieces = [
            "a", "é", "ü.", ". ", "!", "?\n", "\n", "\n\n", " ", "  \n \n", "word", "x.y",
        ];
        let mut seed = 7u64;
        for _ in 0..2_000 {
            let mut text = String::new();
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            for _ in 0..(seed >> 58) * 4 {
                seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                text.push_str(pieces[(seed >> 33) as usize % pieces.len()]);
            }
            for max in [2, 3, 8] {
                let chunks = split_words(&text, max);
                assert!(!chunks.is_empty(), "{text:?}");
                let words = |s: &str| s.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
                assert_eq!(words(&chunks.join(" ")), words(&text), "{text:?}");
                assert!(
                    chunks.iter().all(|c| c.split_whitespace().count() <= max),
                    "{text:?}: {chunks:?}"
                );
            }
        }
    }

    #[test]
    fn tokens_sharing_a_start_count_once_and_no_piece_is_empty() {
        assert_eq!(
            starts(vec![(0, 3), (0, 5), (6, 8), (6, 7)]),
            [(0, 5), (6, 8)]
        );
        let text = "abcdefgh ijk";
        let spans = starts(vec![(0, 4), (0, 8), (9, 12)]);
        let cut = pieces(text, &spans, 1);
        assert_eq!(cut, [(0, 9, 1), (9, 12, 1)]);
        assert!(cut.iter().all(|(a, b, _)| a < b));
    }

    #[test]
    fn paragraphs_and_sentences_tile_their_text() {
        let text = "A b. C d!\n\n\nE f? g\nh\n\n";
        assert_eq!(paragraphs(text).concat(), text);
        assert_eq!(paragraphs(text), ["A b. C d!\n\n\n", "E f? g\nh\n\n"]);
        assert_eq!(sentences("A b. C d! e"), ["A b. ", "C d! ", "e"]);
        assert_eq!(sentences("x.y z"), ["x.y z"]);
    }
}
