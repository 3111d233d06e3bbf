//! A report as a document of blocks, independent of its format: the HTML and Markdown writers
//! render the same document, for a report and for the experiment suite's index alike.

use super::table::Table;

/// A page: a title and blocks, in order.
#[derive(Debug, Clone, Default)]
pub struct Document {
    pub title: String,
    pub blocks: Vec<Block>,
}

#[derive(Debug, Clone)]
pub enum Block {
    /// A section heading, optionally a link (to `html` from the HTML page, `markdown` from the
    /// Markdown one).
    Heading {
        text: String,
        link: Option<Link>,
    },
    /// A paragraph, optionally led by a bold word (`Question.`, `Measured.`).
    Paragraph {
        lead: Option<String>,
        text: String,
    },
    /// A warning or failure, set apart.
    Note(String),
    Table(Table),
    /// A chart: inline SVG in HTML, its PNG in Markdown.
    Figure {
        name: String,
        title: String,
        svg: String,
    },
}

#[derive(Debug, Clone)]
pub struct Link {
    pub html: String,
    pub markdown: String,
}

impl Document {
    pub fn new(title: &str) -> Document {
        Document {
            title: title.into(),
            blocks: Vec::new(),
        }
    }

    pub fn heading(&mut self, text: &str) {
        self.blocks.push(Block::Heading {
            text: text.into(),
            link: None,
        });
    }

    pub fn paragraph(&mut self, lead: Option<&str>, text: &str) {
        self.blocks.push(Block::Paragraph {
            lead: lead.map(Into::into),
            text: text.into(),
        });
    }
}
