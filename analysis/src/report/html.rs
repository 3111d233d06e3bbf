//! HTML: one self-contained page (charts inline as SVG, so it opens from disk with nothing
//! beside it).

use std::io::{self, Write};

use super::document::{Block, Document};

const STYLE: &str = "body{font-family:DejaVu Sans,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1320px;padding:0 1em;color:#222}.wide{overflow-x:auto}\
table{border-collapse:collapse;margin:1em 0;font-size:12px}th,td{border:1px solid #ccc;padding:3px 6px;text-align:right}\
td{white-space:nowrap}.ci{font-size:10px;color:#666}.text{white-space:normal;min-width:24em;text-align:left}\
th{background:#f0f0f0}td:first-child,th:first-child{text-align:left}figure{margin:2em 0}\
figcaption{color:#555;font-size:14px}.note{color:#a33c00}svg{max-width:100%;height:auto}";

/// A table cell; a figure with its interval, `median (low-high)`, on two lines, the interval
/// smaller: tables of many such columns then fit a window. Prose (evidence, errors) wraps.
fn cell_html(cell: &str) -> String {
    if cell.len() > 60 {
        return format!("<div class=\"text\">{}</div>", escape(cell));
    }
    match cell.strip_suffix(')').and_then(|c| c.split_once(" (")) {
        // A figure: it starts with a digit or a sign ("a process per connection (pre-forked)"
        // is prose).
        Some((value, interval))
            if value.starts_with(|c: char| c.is_ascii_digit() || c == '-')
                && !value.contains('(') =>
        {
            format!(
                "{}<br><span class=\"ci\">({})</span>",
                escape(value),
                escape(interval)
            )
        }
        _ => escape(cell),
    }
}

/// Text made safe for HTML element content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

pub fn write(w: &mut impl Write, doc: &Document) -> io::Result<()> {
    let title = escape(&doc.title);
    writeln!(
        w,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>{title}</title><style>{STYLE}</style></head><body>\n<h1>{title}</h1>"
    )?;
    for block in &doc.blocks {
        match block {
            Block::Heading { text, link: None } => writeln!(w, "<h2>{}</h2>", escape(text))?,
            Block::Heading {
                text,
                link: Some(link),
            } => writeln!(
                w,
                "<h2><a href=\"{}\">{}</a></h2>",
                escape(&link.html),
                escape(text)
            )?,
            Block::Paragraph { lead, text } => match lead {
                Some(lead) => writeln!(w, "<p><b>{}</b> {}</p>", escape(lead), escape(text))?,
                None => writeln!(w, "<p>{}</p>", escape(text))?,
            },
            Block::Note(text) => writeln!(w, "<p class=\"note\">{}</p>", escape(text))?,
            Block::Table(table) => {
                if !table.title.is_empty() {
                    writeln!(w, "<h2>{}</h2>", escape(&table.title))?;
                }
                write!(w, "<div class=\"wide\"><table>\n<tr>")?;
                for h in &table.header {
                    write!(w, "<th>{}</th>", escape(h))?;
                }
                writeln!(w, "</tr>")?;
                for row in &table.rows {
                    write!(w, "<tr>")?;
                    for cell in row {
                        write!(w, "<td>{}</td>", cell_html(cell))?;
                    }
                    writeln!(w, "</tr>")?;
                }
                writeln!(w, "</table></div>")?;
            }
            Block::Figure { name, title, svg } => {
                // The SVG inline, without its XML declaration.
                let svg = svg
                    .trim_start_matches(|c| c != '<')
                    .trim_start_matches("<?xml version=\"1.0\" encoding=\"UTF-8\"?>")
                    .trim();
                let name = escape(name);
                writeln!(
                    w,
                    "<figure id=\"{name}\">{svg}<figcaption>{} (<a href=\"{name}.svg\">SVG</a>, \
                     <a href=\"{name}.png\">PNG</a>)</figcaption></figure>",
                    escape(title),
                )?;
            }
        }
    }
    writeln!(w, "</body></html>")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            escape(r#"<a href="x">Tom's & co</a>"#),
            "&lt;a href=&quot;x&quot;&gt;Tom&#39;s &amp; co&lt;/a&gt;"
        );
    }

    #[test]
    fn a_document_becomes_a_page() {
        let mut doc = Document::new("A <title>");
        doc.paragraph(Some("Question."), "why?");
        doc.blocks.push(Block::Note("careful".into()));
        let mut out = Vec::new();
        write(&mut out, &doc).expect("write");
        let page = String::from_utf8(out).expect("utf-8");
        assert!(page.contains("<h1>A &lt;title&gt;</h1>"));
        assert!(page.contains("<p><b>Question.</b> why?</p>"));
        assert!(page.contains("<p class=\"note\">careful</p>"));
        assert!(page.trim_end().ends_with("</html>"));
    }
}
