//! The text a vector is embedded from: a template of column names in braces
//! (`"{title}\n{body}"`); `{{` and `}}` are literal braces. A NULL column reads as empty text.

/// One piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    Literal(String),
    Column(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

impl Template {
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut lit = String::new();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                    lit.push('{');
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                    lit.push('}');
                }
                '{' => {
                    let mut name = String::new();
                    loop {
                        match chars.next() {
                            Some('}') => break,
                            Some(c) => name.push(c),
                            None => return Err(format!("unclosed {{ in {text:?}")),
                        }
                    }
                    if name.is_empty() {
                        return Err(format!("empty {{}} in {text:?}"));
                    }
                    if !lit.is_empty() {
                        parts.push(Part::Literal(std::mem::take(&mut lit)));
                    }
                    parts.push(Part::Column(name));
                }
                '}' => return Err(format!("unmatched }} in {text:?} (write }}}} for a brace)")),
                c => lit.push(c),
            }
        }
        if !lit.is_empty() {
            parts.push(Part::Literal(lit));
        }
        Ok(Self { parts })
    }

    /// The columns it reads, in order of first use.
    pub fn columns(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for p in &self.parts {
            if let Part::Column(c) = p {
                if !out.contains(&c.as_str()) {
                    out.push(c);
                }
            }
        }
        out
    }

    /// Fills the template; `value(column)` gives a column's text (`None`: NULL, read as "").
    pub fn render<'a>(
        &self,
        mut value: impl FnMut(&str) -> Option<std::borrow::Cow<'a, str>>,
    ) -> String {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Literal(l) => out.push_str(l),
                Part::Column(c) => {
                    if let Some(v) = value(c) {
                        out.push_str(&v);
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;

    #[test]
    fn templates_fill_columns_and_keep_literal_braces() {
        let t = Template::parse("{title}\n{body} {{x}} {title}").unwrap();
        assert_eq!(t.columns(), vec!["title", "body"]);
        let s = t.render(|c| match c {
            "title" => Some(Cow::Borrowed("T")),
            _ => None,
        });
        assert_eq!(s, "T\n {x} T");
        assert!(Template::parse("{open").is_err());
        assert!(Template::parse("a } b").is_err());
        assert!(Template::parse("{}").is_err());
    }
}
