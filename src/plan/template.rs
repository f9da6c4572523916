//! `{name}`-style templates in target paths, domains, hooks and probes.

use std::fmt;

/// A parsed template: literal text and `{variable}` placeholders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    source: String,
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Var(String),
}

impl Template {
    /// Parses `text`, accepting only the variables in `allowed`. `{{` and `}}` are literal braces.
    ///
    /// # Errors
    /// An unknown variable, or an unbalanced brace, with the allowed names.
    pub fn parse(text: &str, allowed: &[&str]) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                    literal.push('{');
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                    literal.push('}');
                }
                '{' => {
                    let mut name = String::new();
                    loop {
                        match chars.next() {
                            Some('}') => break,
                            Some(ch) => name.push(ch),
                            None => return Err(format!("unclosed `{{` in `{text}`")),
                        }
                    }
                    if !allowed.contains(&name.as_str()) {
                        return Err(format!(
                            "unknown variable `{{{name}}}` in `{text}`: this field knows {}",
                            list(allowed)
                        ));
                    }
                    if !literal.is_empty() {
                        parts.push(Part::Text(std::mem::take(&mut literal)));
                    }
                    parts.push(Part::Var(name));
                }
                '}' => {
                    return Err(format!(
                        "unmatched `}}` in `{text}` (write `}}}}` for a brace)"
                    ));
                }
                c => literal.push(c),
            }
        }
        if !literal.is_empty() {
            parts.push(Part::Text(literal));
        }
        Ok(Template {
            source: text.to_string(),
            parts,
        })
    }

    /// Whether the template uses `{var}`.
    pub fn uses(&self, var: &str) -> bool {
        self.parts
            .iter()
            .any(|p| matches!(p, Part::Var(v) if v == var))
    }

    /// Fills the placeholders; a variable `lookup` does not know is left as `{var}`.
    pub fn render(&self, lookup: impl Fn(&str) -> Option<String>) -> String {
        let mut out = String::with_capacity(self.source.len() + 16);
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Var(v) => match lookup(v) {
                    Some(value) => out.push_str(&value),
                    None => {
                        out.push('{');
                        out.push_str(v);
                        out.push('}');
                    }
                },
            }
        }
        out
    }

    /// Fills `{name}` only (the common case for site paths and domains).
    pub fn render_name(&self, name: &str) -> String {
        // Without `render`'s lookup, which allocates each value: this runs for every field of
        // every site of a plan.
        let mut out = String::with_capacity(self.source.len() + name.len());
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Var(v) if v == "name" => out.push_str(name),
                Part::Var(v) => {
                    out.push('{');
                    out.push_str(v);
                    out.push('}');
                }
            }
        }
        out
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

fn list(names: &[&str]) -> String {
    if names.is_empty() {
        return "no variables".into();
    }
    names
        .iter()
        .map(|n| format!("`{{{n}}}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_and_rejects() {
        let t = Template::parse("/srv/www/{name}/", &["name"]).unwrap();
        assert_eq!(t.render_name("shop"), "/srv/www/shop/");
        assert!(t.uses("name"));
        let err = Template::parse("/srv/{nmae}", &["name"]).unwrap_err();
        assert!(err.contains("unknown variable `{nmae}`"), "{err}");
        assert!(Template::parse("/srv/{name", &["name"]).is_err());
        assert_eq!(
            Template::parse("a{{b}}", &[]).unwrap().render_name("x"),
            "a{b}"
        );
    }
}
