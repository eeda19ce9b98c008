//! Views: the layout `app/views/app.html` becomes `index.html`, with
//! `<SocketStream>` in its head replaced by the stylesheet and script tags
//! (each with SRI `integrity`) and the templates. Every other `.html` file in a
//! sub-folder of `app/views` is a template: `app/views/people/customers/info.html`
//! becomes `<template id="people-customers-info">`.

use std::cell::RefCell;
use std::collections::BTreeMap;

use html5ever::TokenizerResult;
use html5ever::tokenizer::states::RawKind;
use html5ever::tokenizer::{BufferQueue, TagKind, Token, TokenSink, TokenSinkResult, Tokenizer, TokenizerOpts};

use crate::diagnostic::Diagnostic;
use crate::discover::Source;

/// The layout's path.
pub const LAYOUT: &str = "app/views/app.html";

/// A tag to put in place of `<SocketStream>`.
#[derive(Debug, Clone)]
pub enum Tag {
    /// A stylesheet: URL and integrity.
    Style(String, String),
    /// A script: URL and integrity.
    Script(String, String),
}

/// Templates by id: (the file's path, its HTML), sorted by id.
pub type Templates = BTreeMap<String, (String, String)>;

/// The templates of the app, and warnings about `.html` files that are not templates.
pub fn templates(views: &[Source]) -> Result<(Templates, Vec<String>), Vec<Diagnostic>> {
    let mut out = Templates::new();
    let mut problems = Vec::new();
    let mut warnings = Vec::new();
    for view in views {
        let inner = view.inner_path();
        if !inner.contains('/') {
            if view.path != LAYOUT {
                let stem = inner.trim_end_matches(".html");
                warnings.push(format!(
                    "{} is not used, and SS.tmpl('{stem}') will not find it: templates live in sub-folders of \
                     app/views (app/views/main/{inner} becomes the template `main-{stem}`)",
                    view.path
                ));
            }
            continue;
        }
        let id = inner.trim_end_matches(".html").replace('/', "-");
        let lower = view.text.to_ascii_lowercase();
        // The tag's name, not a longer one (`<templates-list>`).
        let has = |start: &str| {
            lower.match_indices(start).any(|(at, tag)| {
                lower[at + tag.len()..].chars().next().is_none_or(|c| c.is_ascii_whitespace() || c == '>' || c == '/')
            })
        };
        let opens_one = has("<template");
        if opens_one || has("</template") {
            let tag = if opens_one { "<template>" } else { "</template>" };
            problems.push(Diagnostic::file(&view.path, format!("a template cannot contain `{tag}`")).with_help(
                "templates are wrapped in <template> elements; nest another template with a folder instead",
            ));
            continue;
        }
        let seen = scan(&view.text);
        if let Some(what) = seen.unclosed() {
            problems.push(Diagnostic::file(&view.path, format!("the template ends inside {what}")).with_help(
                "close it in this file: templates sit side by side in the page, and the rest of the page would \
                 become part of it",
            ));
            continue;
        }
        if let Some((other, _)) = out.get(&id) {
            problems.push(
                Diagnostic::file(&view.path, format!("`{}` and `{other}` both make the template id `{id}`", view.path))
                    .with_help(
                        "a template's id is its path below app/views with `/` turned into `-`: rename one of them",
                    ),
            );
            continue;
        }
        out.insert(id, (view.path.clone(), view.text.clone()));
    }
    if problems.is_empty() { Ok((out, warnings)) } else { Err(problems) }
}

/// Checks that the layout exists and has one `<SocketStream>` in its head.
pub fn check_layout(views: &[Source]) -> Result<(), Diagnostic> {
    let layout = layout(views)?;
    find_marker(&layout.text).map(|_| ())
}

fn layout(views: &[Source]) -> Result<&Source, Diagnostic> {
    views.iter().find(|v| v.path == LAYOUT).ok_or_else(|| {
        Diagnostic::file(LAYOUT, "the app has no layout app/views/app.html")
            .with_help("create it with `<SocketStream>` in its <head>: ssbuild puts the app's tags there")
    })
}

/// Renders `index.html`: the layout with `<SocketStream>` replaced by `tags` and the templates.
pub fn render_page(views: &[Source], tags: &[Tag], templates: &Templates, minify: bool) -> Result<String, Diagnostic> {
    let layout = layout(views)?;
    let (start, end) = find_marker(&layout.text)?;
    let mut inserted = String::new();
    for tag in tags {
        match tag {
            Tag::Style(url, integrity) => inserted.push_str(&format!(
                "<link rel=\"stylesheet\" href=\"{}\" integrity=\"{integrity}\" crossorigin=\"anonymous\">",
                attr(url)
            )),
            Tag::Script(url, integrity) => inserted.push_str(&format!(
                "<script src=\"{}\" integrity=\"{integrity}\" crossorigin=\"anonymous\" defer></script>",
                attr(url)
            )),
        }
        if !minify {
            inserted.push('\n');
        }
    }
    for (id, (_, html)) in templates {
        inserted.push_str(&format!(
            "<template id=\"{}\">{}</template>",
            attr(id),
            html.trim_start_matches('\u{feff}').trim()
        ));
        if !minify {
            inserted.push('\n');
        }
    }
    let page = format!("{}{}{}", &layout.text[..start], inserted.trim_end(), &layout.text[end..]);
    if !minify {
        return Ok(page);
    }
    let cfg = minify_html::Cfg {
        keep_closing_tags: true,
        keep_html_and_head_opening_tags: true,
        preserve_brace_template_syntax: true,
        minify_css: true,
        minify_js: true,
        ..minify_html::Cfg::new()
    };
    Ok(String::from_utf8(minify_html::minify(page.as_bytes(), &cfg)).expect("minify-html keeps UTF-8"))
}

fn attr(value: &str) -> String {
    escape_html(value)
}

/// `text` safe in HTML text and in a quoted attribute value.
pub fn escape_html(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Finds the one `<SocketStream>` tag of the layout (with its optional end
/// tag), checks with html5ever that it sits in the head, and returns its byte range.
fn find_marker(html: &str) -> Result<(usize, usize), Diagnostic> {
    let found = scan(html);
    let no_marker = || {
        Diagnostic::file(LAYOUT, "the layout has no <SocketStream> tag")
            .with_help("put <SocketStream> in the layout's <head>: ssbuild replaces it with the app's stylesheet, script and templates")
    };
    let (line, in_head) = match found.markers.as_slice() {
        [] => return Err(no_marker()),
        [only] => *only,
        [_, (line, _), ..] => {
            return Err(Diagnostic::at(
                LAYOUT,
                html,
                *line as usize,
                1,
                "the layout has more than one <SocketStream> tag",
            )
            .with_help("keep one, in <head>"));
        }
    };
    if !in_head {
        return Err(Diagnostic::at(LAYOUT, html, line as usize, 1, "<SocketStream> must be in the layout's <head>")
            .with_help("move it into <head>, where stylesheets and scripts load before the page shows"));
    }
    // The tokenizer says there is one, on `line`; find its bytes: the first
    // `<socketstream` outside comments and outside the text of elements such
    // as <script> and <title>.
    let lower = html.to_ascii_lowercase();
    let start = tag_positions(&lower, "<socketstream")
        .into_iter()
        .find(|&at| html[..at].matches('\n').count() as u64 + 1 == line)
        .ok_or_else(no_marker)?;
    let close = lower[start..].find('>').map(|i| start + i + 1).ok_or_else(no_marker)?;
    let rest = &lower[close..];
    let trimmed = rest.trim_start();
    let end = if trimmed.starts_with("</socketstream") {
        let skip = rest.len() - trimmed.len();
        trimmed.find('>').map(|i| close + skip + i + 1).unwrap_or(close)
    } else {
        close
    };
    Ok((start, end))
}

/// Where `needle` (lowercase, starting with `<`) starts in `lower` as markup:
/// not inside a comment, nor inside the text of an element whose content is
/// text up to its end tag (`<script>`, `<style>`, `<title>`...).
fn tag_positions(lower: &str, needle: &str) -> Vec<usize> {
    let bytes = lower.as_bytes();
    let mut found = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'<' {
            i += 1;
            continue;
        }
        let rest = &bytes[i..];
        if rest.starts_with(b"<!--") {
            i = lower[i + 4..].find("-->").map_or(bytes.len(), |end| i + 4 + end + 3);
            continue;
        }
        if rest.starts_with(needle.as_bytes()) {
            found.push(i);
        }
        // A start tag's name, and whether its content is text (the tokenizer's list).
        let name_len = rest[1..].iter().take_while(|c| c.is_ascii_alphanumeric()).count();
        let name = &lower[i + 1..i + 1 + name_len];
        i = match raw_content(name) {
            Some(_) => lower[i + 1..].find(&format!("</{name}")).map_or(bytes.len(), |end| i + 1 + end),
            None => i + 1,
        };
    }
    found
}

/// What html5ever's tokenizer saw: each `<SocketStream>` start tag with its
/// line and whether it was in the head, and what the text left open at its end.
#[derive(Default)]
struct Scan {
    markers: Vec<(u64, bool)>,
    /// An element whose content is text up to its end tag (`<script>`,
    /// `<style>`, `<textarea>`...), still open at the end.
    open_raw: Option<String>,
    /// The text ended inside a comment or a tag.
    eof_inside: bool,
}

impl Scan {
    /// What the text leaves open, so that HTML after it would be swallowed.
    fn unclosed(&self) -> Option<String> {
        match &self.open_raw {
            Some(name) => Some(format!("<{name}>, which is never closed")),
            None => self.eof_inside.then(|| "a comment or a tag that is never closed".to_string()),
        }
    }
}

/// How the HTML tokenizer reads the content of an element (the tree builder's
/// choice, which a bare tokenizer does not make): as text up to the element's
/// end tag for these.
fn raw_content(name: &str) -> Option<TokenSinkResult<()>> {
    Some(match name {
        "script" => TokenSinkResult::RawData(RawKind::ScriptData),
        "style" | "xmp" | "iframe" | "noembed" | "noframes" | "noscript" => TokenSinkResult::RawData(RawKind::Rawtext),
        "title" | "textarea" => TokenSinkResult::RawData(RawKind::Rcdata),
        "plaintext" => TokenSinkResult::Plaintext,
        _ => return None,
    })
}

struct Sink {
    state: RefCell<(Scan, HeadState)>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum HeadState {
    Before,
    In,
    After,
}

impl TokenSink for Sink {
    type Handle = ();

    fn process_token(&self, token: Token, line: u64) -> TokenSinkResult<()> {
        let mut state = self.state.borrow_mut();
        match token {
            Token::TagToken(tag) => {
                let name = tag.name.as_ref();
                match (tag.kind, name) {
                    (TagKind::StartTag, "head") => state.1 = HeadState::In,
                    (TagKind::EndTag, "head") | (TagKind::StartTag, "body") => state.1 = HeadState::After,
                    (TagKind::StartTag, "socketstream") => {
                        let in_head = state.1 != HeadState::After;
                        state.0.markers.push((line, in_head));
                    }
                    (TagKind::StartTag, _) => {
                        if let Some(raw) = raw_content(name) {
                            state.0.open_raw = Some(name.to_string());
                            return raw;
                        }
                    }
                    (TagKind::EndTag, _) => {
                        if state.0.open_raw.as_deref() == Some(name) {
                            state.0.open_raw = None;
                        }
                    }
                }
            }
            Token::ParseError(why) if why.contains("EOF") => state.0.eof_inside = true,
            _ => {}
        }
        TokenSinkResult::Continue
    }
}

fn scan(html: &str) -> Scan {
    let sink = Sink { state: RefCell::new((Scan::default(), HeadState::Before)) };
    let tokenizer = Tokenizer::new(sink, TokenizerOpts::default());
    let input = BufferQueue::default();
    input.push_back(html.into());
    while let TokenizerResult::Script(_) = tokenizer.feed(&input) {}
    tokenizer.end();
    tokenizer.sink.state.into_inner().0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discover::Kind;

    fn view(path: &str, text: &str) -> Source {
        Source { path: path.into(), kind: Kind::View, text: text.into(), digest: [0; 32] }
    }

    const LAYOUT_HTML: &str = "<!doctype html>\n<html>\n<head>\n  <title>t</title>\n  <SocketStream>\n</head>\n<body><p>hi</p></body>\n</html>\n";

    #[test]
    fn a_template_that_leaves_something_open_is_refused() {
        for (text, what) in [
            ("<p>hello <!-- note\n", "a comment or a tag"),
            ("<div class=\"x\n", "a comment or a tag"),
            ("<script>var a = 1;\n", "<script>"),
            ("<textarea>draft", "<textarea>"),
            ("<style>b { color: red }", "<style>"),
        ] {
            let views = [view(LAYOUT, LAYOUT_HTML), view("app/views/a/one.html", text)];
            let err = templates(&views).unwrap_err();
            assert_eq!(err[0].file, "app/views/a/one.html");
            assert!(err[0].message.contains(&format!("the template ends inside {what}")), "{text}: {:?}", err[0]);
        }
        let fine = "<p>a <!-- c --> b</p><script>if (a < b) x('</div>');</script><textarea><b></textarea>";
        assert!(templates(&[view(LAYOUT, LAYOUT_HTML), view("app/views/a/ok.html", fine)]).is_ok());
    }

    /// A `<template>` inside a template could only be left open (its
    /// closing tag is refused), which would make the rest of the page part
    /// of it; the text `<templates>` or an escaped one is fine.
    #[test]
    fn a_template_tag_inside_a_template_is_refused() {
        for (text, tag) in [
            ("<p>z<template>inner\n", "<template>"),
            ("<TEMPLATE id=\"x\">", "<template>"),
            ("<template\n>", "<template>"),
            ("<b></template>", "</template>"),
        ] {
            let views = [view(LAYOUT, LAYOUT_HTML), view("app/views/a/one.html", text)];
            let err = templates(&views).unwrap_err();
            assert_eq!(err[0].file, "app/views/a/one.html");
            assert_eq!(err[0].message, format!("a template cannot contain `{tag}`"), "{text}");
        }
        let fine = "<p>&lt;template&gt; and <templates-list></templates-list></p>";
        let result = templates(&[view(LAYOUT, LAYOUT_HTML), view("app/views/a/ok.html", fine)]);
        assert!(result.is_ok(), "{:?}", result.err());
    }

    #[test]
    fn a_byte_order_mark_stays_out_of_the_template() {
        let views = [view(LAYOUT, LAYOUT_HTML), view("app/views/a/bom.html", "\u{feff}<b>x</b>\n")];
        let (templates, _) = templates(&views).unwrap();
        let page = render_page(&views, &[], &templates, false).unwrap();
        assert!(page.contains("<template id=\"a-bom\"><b>x</b></template>"), "{page}");
    }

    #[test]
    fn a_marker_inside_script_or_title_text_is_not_the_marker() {
        let html = "<html><head><title><SocketStream></title>\n<script>var tag = \"<SocketStream>\";</script>\n\
                    <SocketStream>\n</head><body></body></html>\n";
        let (start, _) = find_marker(html).unwrap();
        assert_eq!(html[..start].matches('\n').count(), 2, "the marker on line 3 is the one");
        // On one line, as in a minified layout, and after a script that writes `<!--`.
        let html = "<html><head><script>var a = \"<!--\", b = \"<SocketStream>\";</script><SocketStream></head></html>";
        let (start, end) = find_marker(html).unwrap();
        assert_eq!(&html[start..end], "<SocketStream>");
        assert!(html[..start].ends_with("</script>"), "{}", &html[..start]);
    }

    #[test]
    fn tags_and_templates_replace_the_marker_in_order() {
        let views = [view(LAYOUT, LAYOUT_HTML), view("app/views/people/info.html", "<b>{{name}}</b>")];
        let (templates, warnings) = templates(&views).unwrap();
        assert!(warnings.is_empty());
        let tags = [
            Tag::Style("/assets/a.css".into(), "sha384-A".into()),
            Tag::Script("/assets/a.js".into(), "sha384-B".into()),
        ];
        let page = render_page(&views, &tags, &templates, false).unwrap();
        let css = page.find("a.css").unwrap();
        let js = page.find("a.js").unwrap();
        let tmpl = page.find("<template id=\"people-info\"><b>{{name}}</b></template>").unwrap();
        assert!(css < js && js < tmpl, "{page}");
        assert!(!page.to_lowercase().contains("socketstream"));
        let small = render_page(&views, &tags, &templates, true).unwrap();
        assert!(small.len() < page.len());
        assert!(small.contains("{{name}}"), "{small}");
        assert!(small.contains("integrity=sha384-B") || small.contains("integrity=\"sha384-B\""), "{small}");
    }

    #[test]
    fn marker_problems_are_explained() {
        let none = [view(LAYOUT, "<html><head></head><body></body></html>")];
        assert!(render_page(&none, &[], &BTreeMap::new(), false).unwrap_err().message.contains("no <SocketStream>"));
        let body = [view(LAYOUT, "<html><head></head>\n<body>\n<SocketStream>\n</body></html>")];
        let err = render_page(&body, &[], &BTreeMap::new(), false).unwrap_err();
        assert!(err.message.contains("must be in the layout's <head>"));
        assert_eq!(err.position, Some((3, 1)));
        let commented =
            [view(LAYOUT, "<html><head><!-- <SocketStream> -->\n<SocketStream></SocketStream></head></html>")];
        let page = render_page(&commented, &[], &BTreeMap::new(), false).unwrap();
        assert_eq!(page, "<html><head><!-- <SocketStream> -->\n</head></html>");
        assert!(render_page(&[], &[], &BTreeMap::new(), false).unwrap_err().message.contains("no layout"));
    }

    #[test]
    fn colliding_template_ids_name_both_files() {
        let views = [view("app/views/a/b-c.html", "x"), view("app/views/a-b/c.html", "y")];
        let err = templates(&views).unwrap_err();
        assert!(
            err[0]
                .message
                .contains("`app/views/a-b/c.html` and `app/views/a/b-c.html` both make the template id `a-b-c`"),
            "{}",
            err[0].message
        );
    }
}
