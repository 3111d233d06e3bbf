//! Markdown: the same document as the HTML page, with the charts' PNGs linked.

use std::io::{self, Write};

use super::document::{Block, Document};

/// Table cells on one line, with pipes that do not end the cell.
fn cell(s: &str) -> String {
    s.replace('\n', " ").replace('|', "\\|")
}

pub fn write(w: &mut impl Write, doc: &Document) -> io::Result<()> {
    writeln!(w, "# {}\n", doc.title)?;
    for block in &doc.blocks {
        match block {
            Block::Heading { text, link: None } => writeln!(w, "## {text}\n")?,
            Block::Heading {
                text,
                link: Some(link),
            } => writeln!(w, "## [{text}]({})\n", link.markdown)?,
            Block::Paragraph { lead, text } => match lead {
                Some(lead) => writeln!(w, "**{lead}** {text}\n")?,
                None => writeln!(w, "{text}\n")?,
            },
            Block::Note(text) => writeln!(w, "> {text}\n")?,
            Block::Table(table) => {
                if !table.title.is_empty() {
                    writeln!(w, "## {}\n", table.title)?;
                }
                let header: Vec<String> = table.header.iter().map(|h| cell(h)).collect();
                writeln!(w, "| {} |", header.join(" | "))?;
                writeln!(w, "|{}", " --- |".repeat(header.len()))?;
                for row in &table.rows {
                    let row: Vec<String> = row.iter().map(|c| cell(c)).collect();
                    writeln!(w, "| {} |", row.join(" | "))?;
                }
                writeln!(w)?;
            }
            Block::Figure { name, title, .. } => {
                writeln!(w, "### {title}\n\n![{name}]({name}.png)\n")?
            }
        }
    }
    Ok(())
}
