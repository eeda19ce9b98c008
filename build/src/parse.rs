//! Parsing one large ES module on every core.
//!
//! A large file (a library shipped as one module: three.js's 1.47 MB
//! `three.core.js` takes swc some 20 ms to parse on one core) keeps one core
//! busy while the others wait. A file of `PARALLEL_PARSE_BYTES` or more is
//! cut at a few places where a top-level declaration starts, and the parts
//! are parsed side by side, each from its own place in the file (so every
//! position is the one a parse of the whole file gives), then joined.
//!
//! A cut is only a guess, made from the text's lines: a line starting, at
//! column 0, with `class`, `function`, `async function`, `const`, `let`,
//! `var` or `export`, where the lines above it up to the last line of code
//! look like comments or are blank, and that line of code ends with `}`, `;`
//! or `)`. A guess is kept only when both parts around it parse cleanly and
//! the part after it starts with a statement at that very keyword, so that
//! only comments and blank lines lie between the parts' code. A wrong guess
//! fails one of these: one inside a block, a template literal or a comment
//! leaves the part before it unfinished, which does not parse; one below a
//! "comment" line that holds code after all (`/* note */ (g)`, which would
//! call what the line above ends with) gives a part that starts elsewhere.
//! Any part that fails, or reports any error, makes the whole file go
//! through the ordinary parse instead, which also reports errors the usual
//! way. Where every part passes, each cut lies between two top-level
//! statements, the second a declaration, which no expression can run on
//! into: the joined module is the one parsing the whole file gives,
//! positions and comments included (tests compare them, on three.js and on
//! a generated module with comments of every kind): a part is also refused
//! when a comment follows its last token, as swc would attach it to that
//! token rather than to the next statement.
//!
//! Only ES modules are parsed in parts (a file is one when some part holds
//! an `import` or `export` declaration): a file without them goes through
//! the ordinary parse, which tells a script from a module.

use rayon::prelude::*;
use swc_core::common::comments::{Comment, Comments};
use swc_core::common::{BytePos, SourceFile, Span, Spanned};
use swc_core::ecma::ast::{EsVersion, Module, ModuleItem, Program};
use swc_core::ecma::parser::{Parser, StringInput, Syntax, lexer::Lexer};

use crate::js::KeptComments;

/// Files smaller than this are parsed whole: parsing them takes a few
/// milliseconds, and rayon's other threads are busy with other files.
pub const PARALLEL_PARSE_BYTES: usize = 256 * 1024;

/// Parts per thread: more parts even out their sizes.
const PARTS_PER_THREAD: usize = 2;

/// How far past the even share of the file a cut is looked for.
const CUT_SEARCH_BYTES: usize = 64 * 1024;

/// The keywords a top-level declaration a file can be cut before starts with.
const DECLARATIONS: [&str; 8] =
    ["class ", "function ", "function*", "async function", "const ", "let ", "var ", "export "];

/// Comments found while parsing a part, taken out of their store.
type Found = Vec<(BytePos, Vec<Comment>)>;

/// Parses `file` as an ES module in parts on rayon's threads. `None` when the
/// file is small, is not an ES module, has no place to cut, or any part fails
/// to parse cleanly: the caller then parses the whole file. The comments
/// kept go to `comments`, as the whole file's parse would add them.
pub(crate) fn module_in_parts(file: &SourceFile, syntax: Syntax, comments: &KeptComments) -> Option<Program> {
    let src: &str = &file.src;
    if !matches!(syntax, Syntax::Es(_)) || src.len() < PARALLEL_PARSE_BYTES || !has_module_line(src) {
        return None;
    }
    let cuts = cuts(src, rayon::current_num_threads() * PARTS_PER_THREAD);
    if cuts.len() < 3 {
        return None;
    }
    let start = file.start_pos;
    let all = comments.all;
    let parts: Vec<Option<(Module, Found, Found)>> = cuts
        .par_windows(2)
        .map(|w| {
            let (from, to) = (w[0].at, w[1].at);
            let store = KeptComments::new(all);
            let input = StringInput::new(&src[from..to], start + BytePos(from as u32), start + BytePos(to as u32));
            let mut parser = Parser::new_from(Lexer::new(syntax, EsVersion::latest(), input, Some(&store)));
            let module = parser.parse_module().ok()?;
            if !parser.take_errors().is_empty() {
                return None;
            }
            // The part's code starts at the declaration the cut was made
            // for: what lay between was comments and blank lines only.
            if let Some(keyword) = w[0].keyword
                && module.body.first().map(|item| item.span_lo()) != Some(start + BytePos(keyword as u32))
            {
                return None;
            }
            // Nothing but blanks after the part's last token: a comment
            // there would be left pending at the part's end, where swc makes
            // it trail that token, while the whole file's parse puts it
            // before the next statement.
            let last = (module.span.hi - start).0 as usize;
            if w[1].keyword.is_some() && !src.get(last..to).is_some_and(|tail| tail.trim().is_empty()) {
                return None;
            }
            drop(parser);
            let (leading, trailing) = store.inner.take_all();
            let leading = leading.take().into_iter().collect();
            let trailing = trailing.take().into_iter().collect();
            Some((module, leading, trailing))
        })
        .collect();
    let parts: Vec<(Module, Found, Found)> = parts.into_iter().collect::<Option<_>>()?;
    if !parts.iter().any(|(m, ..)| m.body.iter().any(|item| matches!(item, ModuleItem::ModuleDecl(_)))) {
        return None;
    }
    let lo = parts.first().map(|(m, ..)| m.span.lo)?;
    let hi = parts.last().map(|(m, ..)| m.span.hi)?;
    let mut body = Vec::with_capacity(parts.iter().map(|(m, ..)| m.body.len()).sum());
    let mut shebang = None;
    for (i, (module, leading, trailing)) in parts.into_iter().enumerate() {
        if i == 0 {
            shebang = module.shebang;
        }
        body.extend(module.body);
        for (pos, list) in leading {
            comments.add_leading_comments(pos, list);
        }
        for (pos, list) in trailing {
            comments.add_trailing_comments(pos, list);
        }
    }
    Some(Program::Module(Module { span: Span::new(lo, hi), body, shebang }))
}

/// Whether some line starts with `import` or `export`: a cheap look before
/// parsing in parts, which only ES modules are.
fn has_module_line(src: &str) -> bool {
    ["export ", "export{", "import "].iter().any(|k| src.starts_with(k) || src.contains(&format!("\n{k}")))
}

/// A place to cut the file at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cut {
    /// Where the part after it starts (the comments above its first statement included).
    at: usize,
    /// Where that statement's keyword is (none at the file's start and end).
    keyword: Option<usize>,
}

/// Up to `parts - 1` places to cut `src` at, near even shares of it, with
/// the file's start and end around them.
fn cuts(src: &str, parts: usize) -> Vec<Cut> {
    let mut cuts = vec![Cut { at: 0, keyword: None }];
    for i in 1..parts {
        let share = src.len() / parts * i;
        let after = share.max(cuts.last().map_or(0, |c| c.at) + 1);
        if let Some(cut) = cut_after(src, after) {
            cuts.push(cut);
        }
    }
    cuts.push(Cut { at: src.len(), keyword: None });
    cuts.dedup_by_key(|c| c.at);
    cuts
}

/// The first place at or after byte `from` (and within `CUT_SEARCH_BYTES`)
/// where a top-level declaration seems to start, comments above it included.
fn cut_after(src: &str, from: usize) -> Option<Cut> {
    let bytes = src.as_bytes();
    let limit = (from + CUT_SEARCH_BYTES).min(bytes.len());
    let mut at = from;
    // Each line start (a `\n` is never inside a multi-byte character).
    while let Some(newline) = bytes.get(at..limit)?.iter().position(|&b| b == b'\n') {
        let line = at + newline + 1;
        at = line;
        if !DECLARATIONS.iter().any(|k| src[line..].starts_with(k)) {
            continue;
        }
        // Take in the comments and blank lines right above it.
        let mut cut = line;
        while let Some(before) = src[..cut].strip_suffix('\n') {
            let prev_start = before.rfind('\n').map_or(0, |i| i + 1);
            let prev = before[prev_start..].trim();
            let comment = prev.is_empty() || prev.starts_with('*') || prev.starts_with("/*") || prev.starts_with("//");
            if !comment {
                // Another line break inside the line of code (a lone `\r`,
                // U+2028, U+2029) could leave a comment after it pending at
                // the part's end, where swc attaches it to the last token.
                let ends_code = prev.ends_with('}') || prev.ends_with(';') || prev.ends_with(')');
                if ends_code && !prev.contains(['\r', '\u{2028}', '\u{2029}']) {
                    return Some(Cut { at: cut, keyword: Some(line) });
                }
                break;
            }
            cut = prev_start;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use swc_core::common::comments::Comment;
    use swc_core::common::sync::Lrc;
    use swc_core::common::{BytePos, FileName, SourceMap};
    use swc_core::ecma::ast::{EsVersion, Program};
    use swc_core::ecma::parser::{EsSyntax, Syntax, parse_file_as_program};

    use super::module_in_parts;
    use crate::js::KeptComments;

    type Sorted = Vec<(BytePos, Vec<Comment>)>;

    fn sorted(store: KeptComments) -> (Sorted, Sorted) {
        let (leading, trailing) = store.inner.take_all();
        let mut leading: Sorted = leading.take().into_iter().collect();
        let mut trailing: Sorted = trailing.take().into_iter().collect();
        leading.sort_by_key(|(pos, _)| *pos);
        trailing.sort_by_key(|(pos, _)| *pos);
        (leading, trailing)
    }

    /// The whole file's parse, and the parse in parts (`None`: not done in parts), each with its comments.
    #[allow(clippy::type_complexity)]
    fn both(src: &str, all: bool) -> ((Program, (Sorted, Sorted)), Option<(Program, (Sorted, Sorted))>) {
        let cm: Lrc<SourceMap> = Default::default();
        // Another file first, so that positions do not start at the map's beginning.
        cm.new_source_file(FileName::Anon.into(), "let before = 1;\n".to_string());
        let file = cm.new_source_file(FileName::Anon.into(), src.to_string());
        let syntax = Syntax::Es(EsSyntax { allow_return_outside_function: true, ..Default::default() });
        let store = KeptComments::new(all);
        let mut errors = Vec::new();
        let whole = parse_file_as_program(&file, syntax, EsVersion::latest(), Some(&store), &mut errors)
            .expect("the test input parses");
        assert!(errors.is_empty(), "{errors:?}");
        let whole = (whole, sorted(store));
        let store = KeptComments::new(all);
        let parts = module_in_parts(&file, syntax, &store).map(|program| (program, sorted(store)));
        (whole, parts)
    }

    /// About 600 KB of declarations, with comments of every kind, and characters of more than one byte.
    fn declarations() -> String {
        let mut src = String::from("#!/usr/bin/env node\n'use strict';\nimport { x } from './x.js';\n");
        for i in 0..4000 {
            src.push_str(&format!(
                "/**\n * Number {i}.\n */\nclass C{i} extends Base {{\n  get v() {{ return /*#__PURE__*/ f({i}) / 2; }}\n}}\n\n\
                 // a line comment\nfunction f{i}(a) {{\n  return `t${{a}}\n  more`; // trailing {i}\n}}\n\
                 const k{i} = (a) => a\n  / 2 / {i};\nlet r{i} = /re{{2}}/g.test('{i}')\n/*! license {i} */\nvar v{i} = [f{i}(1), 'é✓ {i}'];\n"
            ));
        }
        src.push_str("export { C1, f2 };\nexport default C3;\n");
        src
    }

    #[test]
    fn a_large_module_parses_in_parts_as_it_does_whole() {
        let src = declarations();
        for all in [true, false] {
            let (whole, parts) = both(&src, all);
            let parts = parts.expect("cut and parsed in parts");
            assert!(parts == whole, "the parse in parts differs from the whole file's (all comments: {all})");
        }
    }

    #[test]
    fn three_core_parses_in_parts_as_it_does_whole() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../node_modules/three/build/three.core.js");
        let Ok(src) = std::fs::read_to_string(path) else {
            assert!(std::env::var_os("CI").is_none(), "{path} is missing: run `npm ci`");
            eprintln!("skipped: {path} is missing (run `npm ci`)");
            return;
        };
        let (whole, parts) = both(&src, false);
        let parts = parts.expect("three.core.js is cut and parsed in parts");
        assert!(parts == whole, "the parse in parts differs from the whole file's");
    }

    #[test]
    fn cuts_inside_a_template_or_a_comment_fall_back_to_the_whole_file() {
        let inside = "}\nclass X {}\nfunction f() {}\n".repeat(30_000);
        for src in [
            format!("export const a = 1;\nconst t = `\n{inside}`;\n"),
            format!("export const a = 1;\n/*\n{inside}*/\n"),
            format!("export const a = 1;\nfunction g() {{\n{inside}\n"),
        ] {
            assert!(super::cuts(&src, 4).len() > 2, "the test input has places that look like cuts");
            let cm: Lrc<SourceMap> = Default::default();
            let file = cm.new_source_file(FileName::Anon.into(), src);
            let syntax = Syntax::Es(EsSyntax::default());
            assert!(module_in_parts(&file, syntax, &KeptComments::new(false)).is_none());
        }
    }

    #[test]
    fn code_after_a_comment_above_a_cut_keeps_the_whole_file_meaning() {
        // `f()\n/* note */ (g)` calls what `f()` returns: a cut below the
        // "comment" line would make two statements of it.
        let calls = format!("{}export {{}};\n", "x = f()\n/* note */ (g)\nfunction h() {}\n".repeat(20_000));
        // `(x)\n/**/ /re/g` divides: a cut would make it a regular expression.
        let divides = format!("{}export {{}};\n", "d = (x)\n/**/ /re/g.test(s)\nfunction k() {}\n".repeat(20_000));
        // A line break inside a comment line, then code.
        let breaks = format!("{}export {{}};\n", "x = f()\n// note\u{2028}(g)\nfunction h() {}\n".repeat(20_000));
        for src in [calls, divides, breaks] {
            assert!(super::cuts(&src, 4).len() > 2, "the test input has places that look like cuts");
            for all in [true, false] {
                let (whole, parts) = both(&src, all);
                assert!(parts.is_none(), "cut where code ran on");
                assert!(matches!(whole.0, Program::Module(_)));
            }
        }
        // Comments after the last token before a cut: the whole file's parse
        // puts them before the next statement, a part's end after its last token.
        let trailing =
            format!("{}export {{}};\n", "run() /* setup */ // (see below)\nfunction h() {}\n".repeat(20_000));
        let block =
            format!("{}export {{}};\n", "foo();\n/* old:\n   bar() */ // (kept)\nfunction h() {}\n".repeat(20_000));
        for src in [trailing, block] {
            assert!(super::cuts(&src, 4).len() > 2, "the test input has places that look like cuts");
            let (whole, parts) = both(&src, true);
            assert!(parts.is_none_or(|parts| parts == whole), "the comments land elsewhere");
        }
        // A comment after a line break inside the line of code above: no cut there.
        let pending = format!("{}export {{}};\n", "a();\u{2028}// x)\nfunction h() {}\n".repeat(20_000));
        assert_eq!(super::cuts(&pending, 4).len(), 2);
        // Code that does not parse whole, and whose parts would.
        let invalid = format!("{}export {{}};\n", "let v = f()\n/* c */ (a) => a\nfunction h() {}\n".repeat(20_000));
        let cm: Lrc<SourceMap> = Default::default();
        let file = cm.new_source_file(FileName::Anon.into(), invalid);
        assert!(module_in_parts(&file, Syntax::Es(EsSyntax::default()), &KeptComments::new(false)).is_none());
    }

    #[test]
    fn scripts_and_small_files_are_parsed_whole() {
        let script = "function f() {}\nclass X {}\n".repeat(30_000);
        let small = format!("{}export {{}};\n", "function f() {}\n".repeat(100));
        for src in [script, small] {
            let cm: Lrc<SourceMap> = Default::default();
            let file = cm.new_source_file(FileName::Anon.into(), src);
            let syntax = Syntax::Es(EsSyntax::default());
            assert!(module_in_parts(&file, syntax, &KeptComments::new(false)).is_none());
        }
    }
}
