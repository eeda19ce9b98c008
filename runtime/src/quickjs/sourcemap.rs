//! Positions in the server bundle back to the app's files, through the
//! source map ssbuild writes beside a development bundle (an index map: one
//! section per module). Stack traces then name `app/server/chat.js:5:11`
//! instead of a line of `server.HASH.js`.

use std::cell::OnceCell;

use serde::Deserialize;

/// A parsed index source map; each section is decoded when first needed.
pub struct BundleMap {
    sections: Vec<Section>,
    /// The bundle, and where each of its lines starts: the engine counts
    /// columns in UTF-8 bytes, source maps in UTF-16 code units.
    bundle: String,
    line_starts: Vec<usize>,
}

#[derive(Deserialize)]
struct IndexMap {
    sections: Vec<RawSection>,
}

#[derive(Deserialize)]
struct RawSection {
    offset: Offset,
    map: RawMap,
}

#[derive(Deserialize)]
struct Offset {
    line: u32,
    column: u32,
}

#[derive(Deserialize)]
struct RawMap {
    sources: Vec<String>,
    mappings: String,
}

/// One mapping: (generated column, source, original line, original column), all 0-based.
type Segment = (u32, u32, u32, u32);

struct Section {
    line: u32,
    column: u32,
    sources: Vec<String>,
    mappings: String,
    /// Per generated line, its segments by column.
    decoded: OnceCell<Vec<Vec<Segment>>>,
}

impl BundleMap {
    /// Parses the index map `text` of `bundle`; `None` when it is not one.
    pub fn parse(text: &str, bundle: &str) -> Option<BundleMap> {
        let index: IndexMap = serde_json::from_str(text).ok()?;
        let mut sections: Vec<Section> = index
            .sections
            .into_iter()
            .map(|s| Section {
                line: s.offset.line,
                column: s.offset.column,
                sources: s.map.sources,
                mappings: s.map.mappings,
                decoded: OnceCell::new(),
            })
            .collect();
        sections.sort_by_key(|s| (s.line, s.column));
        let line_starts = std::iter::once(0).chain(bundle.match_indices('\n').map(|(i, _)| i + 1)).collect();
        Some(BundleMap { sections, bundle: bundle.to_string(), line_starts })
    }

    /// Where the engine's 1-based `line` and byte `column` of the bundle came from.
    pub fn lookup_engine(&self, line: u32, column: u32) -> Option<(&str, u32, u32)> {
        let start = *self.line_starts.get(line.checked_sub(1)? as usize)?;
        let end = self.bundle[start..].find('\n').map_or(self.bundle.len(), |n| start + n);
        let text = &self.bundle[start..end];
        let mut bytes = (column.saturating_sub(1) as usize).min(text.len());
        while !text.is_char_boundary(bytes) {
            bytes -= 1;
        }
        let utf16 = text[..bytes].encode_utf16().count() as u32;
        self.lookup(line, utf16 + 1)
    }

    /// The file, line and column (1-based) that wrote the 1-based `line` and
    /// `column` (in UTF-16 code units) of the bundle, when the map knows.
    pub fn lookup(&self, line: u32, column: u32) -> Option<(&str, u32, u32)> {
        let (line, column) = (line.checked_sub(1)?, column.saturating_sub(1));
        let at = self.sections.partition_point(|s| (s.line, s.column) <= (line, column));
        let section = &self.sections[at.checked_sub(1)?];
        let relative = line - section.line;
        let column = if relative == 0 { column - section.column } else { column };
        let lines = section.decoded.get_or_init(|| decode(&section.mappings));
        let segments = lines.get(relative as usize)?;
        let found = segments.partition_point(|s| s.0 <= column);
        // Before the line's first mapping: the first one still names the line.
        let &(_, source, orig_line, orig_column) = segments.get(found.saturating_sub(1))?;
        let file = section.sources.get(source as usize)?;
        Some((file.as_str(), orig_line + 1, orig_column + 1))
    }
}

/// Decodes a `mappings` string (base64 VLQ) into segments per generated line;
/// segments without a source are dropped.
fn decode(mappings: &str) -> Vec<Vec<Segment>> {
    let mut lines = Vec::new();
    let (mut source, mut orig_line, mut orig_column) = (0i64, 0i64, 0i64);
    for line in mappings.split(';') {
        let mut segments = Vec::new();
        let mut column = 0i64;
        for segment in line.split(',').filter(|s| !s.is_empty()) {
            let Some(fields) = vlq(segment) else { continue };
            column += fields[0];
            if fields.len() >= 4 {
                source += fields[1];
                orig_line += fields[2];
                orig_column += fields[3];
                if column >= 0 && source >= 0 && orig_line >= 0 && orig_column >= 0 {
                    segments.push((column as u32, source as u32, orig_line as u32, orig_column as u32));
                }
            }
        }
        segments.sort_by_key(|s| s.0);
        lines.push(segments);
    }
    lines
}

/// The numbers of one segment.
fn vlq(segment: &str) -> Option<Vec<i64>> {
    let mut out = Vec::with_capacity(5);
    let (mut value, mut shift) = (0i64, 0u32);
    for byte in segment.bytes() {
        let digit = match byte {
            b'A'..=b'Z' => byte - b'A',
            b'a'..=b'z' => byte - b'a' + 26,
            b'0'..=b'9' => byte - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as i64;
        if shift > 60 {
            return None;
        }
        value |= (digit & 31) << shift;
        if digit & 32 != 0 {
            shift += 5;
        } else {
            out.push(if value & 1 == 1 { -(value >> 1) } else { value >> 1 });
            value = 0;
            shift = 0;
        }
    }
    (shift == 0 && !out.is_empty()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vlq_reads_signs_and_continuations() {
        assert_eq!(vlq("AAAA"), Some(vec![0, 0, 0, 0]));
        assert_eq!(vlq("D"), Some(vec![-1]));
        assert_eq!(vlq("gB"), Some(vec![16]));
        assert_eq!(vlq("2H"), Some(vec![123]));
        assert_eq!(vlq("g"), None, "a continuation with nothing after it");
    }

    #[test]
    fn positions_map_through_the_right_section() {
        // Section 1 at line 10: its line 0 maps column 4 to a.js 1:0 and column 10 to a.js 1:6;
        // its line 1 maps column 2 to a.js 3:2. Section 2 at line 20: column 0 to b.js 5:1 (all 0-based).
        let map = r#"{"version":3,"sections":[
            {"offset":{"line":20,"column":0},"map":{"version":3,"sources":["app/server/b.js"],"names":[],"mappings":"AAIC"}},
            {"offset":{"line":10,"column":0},"map":{"version":3,"sources":["app/server/a.js"],"names":[],"mappings":"IAAA,MAAM;EAEJ"}}
        ]}"#;
        let bundle = format!("{}é = 1; x = 2; y = 3;\n", "\n".repeat(10));
        let map = BundleMap::parse(map, &bundle).unwrap();
        // `é` is two bytes in UTF-8 and one code unit in UTF-16: byte column 6 is column 5.
        assert_eq!(map.lookup_engine(11, 6), map.lookup(11, 5));
        assert_eq!(map.lookup_engine(11, 12), Some(("app/server/a.js", 1, 7)));
        assert_eq!(map.lookup_engine(11, 999), map.lookup(11, 20), "past the end of the line");
        assert_eq!(map.lookup(11, 5), Some(("app/server/a.js", 1, 1)));
        assert_eq!(map.lookup(11, 12), Some(("app/server/a.js", 1, 7)));
        assert_eq!(map.lookup(11, 1), Some(("app/server/a.js", 1, 1)), "before the first mapping of the line");
        assert_eq!(map.lookup(12, 9), Some(("app/server/a.js", 3, 3)));
        assert_eq!(map.lookup(21, 1), Some(("app/server/b.js", 5, 2)));
        assert_eq!(map.lookup(5, 1), None, "before any module");
        assert_eq!(map.lookup(15, 1), None, "a line the section does not map");
        assert!(BundleMap::parse("{\"version\":3,\"mappings\":\"\"}", "").is_none());
    }
}
