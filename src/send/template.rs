//! Email templates: a subject, a text body and an optional HTML body, in minijinja.
//!
//! Undefined variables are errors, not empty strings: a misspelt `{{ cde }}` must stop the
//! campaign before the first email, not send a thousand emails without a code. Errors carry
//! the template's file, line and column.

use std::collections::BTreeMap;
use std::sync::Arc;

use minijinja::value::{Enumerator, Object, Value};
use minijinja::{AutoEscape, Environment, UndefinedBehavior};

use crate::Error;

/// The subject when `--subject` is not given.
pub const DEFAULT_SUBJECT: &str = "Your invitation code";

/// The text body when `--text-template` is not given.
pub const DEFAULT_TEXT: &str = "\
Hello,

You are invited to create an account{% if sign_up_url %} at {{ sign_up_url }}{% endif %}.

Your invitation code is:

    {{ code }}

{% if kind == \"email\" -%}
Sign up with this email address, {{ email }}, and enter the code when asked.
{%- else -%}
Sign up with your email address at {{ audience }} and enter the code when asked.
{%- endif %}
The code is valid until {{ expires_human }}.
";

/// One template's text and the name errors give it (a file path, or a flag).
#[derive(Debug, Clone)]
pub struct TemplateSource {
    /// Where it came from, for error messages: `invite.txt`, `--subject`.
    pub name: String,
    /// The template text.
    pub text: String,
}

impl TemplateSource {
    /// A template named `name`.
    #[must_use]
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            text: text.into(),
        }
    }
}

/// The three parts of a message, rendered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// The subject, on one line.
    pub subject: String,
    /// The plain text body.
    pub text: String,
    /// The HTML body, when an HTML template was given.
    pub html: Option<String>,
}

/// The compiled templates of a campaign.
pub struct Templates {
    env: Environment<'static>,
    /// Each internal template (`subject`, `text`, `html`) as given: its user-facing name and
    /// its text, for errors (minijinja keeps a template's text in its errors only in debug
    /// builds).
    sources: BTreeMap<&'static str, TemplateSource>,
    html: bool,
    /// The zone of `expires.human` and of the `date` filter's output.
    zone: jiff::tz::TimeZone,
}

/// How `expires.human` writes the expiry: `15 December 2026, 23:59 UTC`.
pub const HUMAN_DATE: &str = "%-d %B %Y, %H:%M %Z";

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Templates")
            .field(
                "sources",
                &self.sources.values().map(|s| &s.name).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

const SUBJECT: &str = "subject";
const TEXT: &str = "text";
const HTML: &str = "html";

impl Templates {
    /// Compiles the templates; `None` takes the built-in subject or text body.
    ///
    /// # Errors
    ///
    /// [`Error::Template`] with the file, line and column of a syntax error.
    pub fn new(
        subject: Option<TemplateSource>,
        text: Option<TemplateSource>,
        html: Option<TemplateSource>,
    ) -> Result<Self, Error> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        // Only the HTML body escapes: a subject or text body with `&amp;` would read badly.
        env.set_auto_escape_callback(|name| {
            if name == HTML {
                AutoEscape::Html
            } else {
                AutoEscape::None
            }
        });
        // HTML escaping as the HTML standard needs it: `& < > " '`. minijinja also writes `/`
        // as `&#x2f;`, which turns every link a cell or `sign_up_url` holds into
        // `https:&#x2f;&#x2f;…`: valid, but unreadable in the message's source.
        env.set_formatter(|out, state, value| {
            if *state.auto_escape() == AutoEscape::Html
                && !value.is_safe()
                && let Some(text) = value.as_str()
            {
                return write_html_escaped(out, text);
            }
            minijinja::escape_formatter(out, state, value)
        });
        let mut templates = Self {
            env,
            sources: BTreeMap::new(),
            html: html.is_some(),
            zone: jiff::tz::TimeZone::UTC,
        };
        templates.set_time_zone(jiff::tz::TimeZone::UTC);
        let subject =
            subject.unwrap_or_else(|| TemplateSource::new("the default subject", DEFAULT_SUBJECT));
        let text = text.unwrap_or_else(|| TemplateSource::new("the default text", DEFAULT_TEXT));
        for (key, source) in [(SUBJECT, Some(subject)), (TEXT, Some(text)), (HTML, html)] {
            let Some(source) = source else { continue };
            let compiled = templates.env.add_template_owned(key, source.text.clone());
            if let Err(err) = compiled {
                return Err(template_error(&source.name, &source.text, &err));
            }
            templates.sources.insert(key, source);
        }
        Ok(templates)
    }

    /// Whether an HTML body is rendered too.
    #[must_use]
    pub fn has_html(&self) -> bool {
        self.html
    }

    /// Writes dates in `zone` (UTC unless set): `expires.human`, and the `date` filter
    /// unless a template names another zone (`{{ expires | date("%d.%m.%Y", tz="Europe/Berlin")
    /// }}`).
    pub fn set_time_zone(&mut self, zone: jiff::tz::TimeZone) {
        self.zone = zone.clone();
        self.env.add_filter(
            "date",
            move |value: &Value, format: &str, kwargs: minijinja::value::Kwargs| {
                let tz: Option<String> = kwargs.get("tz")?;
                kwargs.assert_all_used()?;
                date_filter(value, format, tz.as_deref(), &zone)
            },
        );
    }

    /// An instant as `expires.human` writes it, in the zone set by
    /// [`Templates::set_time_zone`]: `15 December 2026, 23:59 UTC`, `16 December 2026, 00:59
    /// CET`.
    #[must_use]
    pub fn human_date(&self, unix_seconds: i64) -> String {
        jiff::Timestamp::from_second(unix_seconds)
            .ok()
            .and_then(|at| {
                jiff::fmt::strtime::format(HUMAN_DATE, &at.to_zoned(self.zone.clone())).ok()
            })
            .unwrap_or_else(|| unix_seconds.to_string())
    }

    /// Renders the three parts for one row's variables.
    ///
    /// # Errors
    ///
    /// [`Error::Template`] for an undefined variable or a failing filter, with its place.
    pub fn render(&self, vars: Vars) -> Result<Rendered, Error> {
        let context = Value::from_object(vars);
        let subject = self.render_one(SUBJECT, &context)?;
        // A subject is one line: line breaks from a template or a cell become spaces (the
        // mail library would encode them, but a folded subject reads badly).
        let subject = subject.split_whitespace().collect::<Vec<_>>().join(" ");
        let text = self.render_one(TEXT, &context)?;
        let html = if self.html {
            Some(self.render_one(HTML, &context)?)
        } else {
            None
        };
        Ok(Rendered {
            subject,
            text,
            html,
        })
    }

    fn render_one(&self, key: &'static str, context: &Value) -> Result<String, Error> {
        let (name, source) = self
            .sources
            .get(key)
            .map_or((key, ""), |s| (s.name.as_str(), s.text.as_str()));
        let template = self
            .env
            .get_template(key)
            .map_err(|err| template_error(name, source, &err))?;
        template.render(context).map_err(|err| {
            if err.kind() == minijinja::ErrorKind::UndefinedError
                && let Some(error) = self
                    .unknown_variable(name, &template, source, err.range(), context)
                    .or_else(|| unknown_header(name, source, err.range(), context))
            {
                return error;
            }
            template_error(name, source, &err)
        })
    }

    /// The error for a variable the template names that is neither set for the row nor a
    /// global, with the place of its first use; `None` when there is no such variable (then
    /// the undefined value is an attribute or an item, and minijinja's error says so).
    fn unknown_variable(
        &self,
        name: &str,
        template: &minijinja::Template<'_, '_>,
        source: &str,
        range: Option<std::ops::Range<usize>>,
        context: &Value,
    ) -> Option<Error> {
        let mut unknown: Vec<String> = template
            .undeclared_variables(false)
            .into_iter()
            .filter(|var| {
                context
                    .get_attr(var)
                    .map_or(true, |value| value.is_undefined())
                    && !self.env.globals().any(|(global, _)| global == var)
            })
            .collect();
        unknown.sort();
        // The one in the expression that failed, when minijinja says where that is: another
        // unset name may be guarded (`{{ nickname | default(first_name) }}`).
        let (from, to) = range.map_or((0, source.len()), |r| (r.start, r.end));
        let within = source.get(from..to).unwrap_or_default();
        let (var, at) = unknown
            .iter()
            .find_map(|var| first_use(within, var).map(|at| (var, from + at)))?;
        let (line, column) = place(source, at).unwrap_or((1, 1));
        let mut known: Vec<String> = context
            .try_iter()
            .into_iter()
            .flatten()
            .filter_map(|key| key.as_str().map(str::to_owned))
            .collect();
        known.sort_unstable();
        Some(Error::Template {
            template: name.to_owned(),
            line,
            column,
            reason: format!(
                "undefined value: `{var}` is not a column or a variable (there are: {})",
                known.join(", ")
            ),
        })
    }
}

/// The columns of a recipients file as template variables, worked out once a campaign: each
/// column's variable name (see [`identifier`]; empty when the header has no letter or digit)
/// and its header as written, for `row["Header as written"]`.
#[derive(Debug, Clone)]
pub struct Columns(Vec<(String, String)>);

impl Columns {
    /// The columns named by `headers`, in file order.
    pub fn new<'a>(headers: impl IntoIterator<Item = &'a str>) -> Arc<Self> {
        let names = headers
            .into_iter()
            .map(|header| {
                let header = header.trim_start_matches('\u{feff}').trim();
                (identifier(header), header.to_owned())
            })
            .collect();
        Arc::new(Self(names))
    }

    /// The cell of `row`'s last column whose name `of` gives as `key`: the last, as a later
    /// column of the same name wins.
    fn lookup<'v>(
        &self,
        row: &'v [Value],
        key: &str,
        of: fn(&(String, String)) -> &str,
    ) -> Option<&'v Value> {
        self.0
            .iter()
            .zip(row)
            .rev()
            .find(|(names, _)| of(names) == key)
            .map(|(_, cell)| cell)
    }
}

/// The variables of one message: the row's cells under their columns' names, the row as
/// `row["Header as written"]`, and the variables [`Vars::set`] gives, which win over both.
/// Looked up as the template asks for them: no map is built a message.
#[derive(Debug, Clone)]
pub struct Vars {
    columns: Arc<Columns>,
    cells: Vec<Value>,
    fixed: Vec<(&'static str, Value)>,
}

impl Vars {
    /// The variables of a row whose cells are `cells`, in the order of `columns` (a missing
    /// cell is empty).
    pub fn new<'a>(columns: &Arc<Columns>, cells: impl IntoIterator<Item = &'a str>) -> Self {
        let mut cells: Vec<Value> = cells.into_iter().map(Value::from).collect();
        cells.resize(columns.0.len(), Value::from(""));
        Self {
            columns: Arc::clone(columns),
            cells,
            fixed: Vec::with_capacity(8),
        }
    }

    /// Sets a variable; a later one of the same name wins.
    pub fn set(&mut self, name: &'static str, value: impl Into<Value>) {
        self.fixed.push((name, value.into()));
    }
}

impl Object for Vars {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let key = key.as_str()?;
        if let Some((_, value)) = self.fixed.iter().rev().find(|(name, _)| *name == key) {
            return Some(value.clone());
        }
        if key == "row" {
            return Some(Value::from_object(Row(Arc::clone(self))));
        }
        self.columns
            .lookup(&self.cells, key, |(name, _)| name)
            .cloned()
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        let mut keys: Vec<&str> = self.fixed.iter().map(|(name, _)| *name).collect();
        keys.push("row");
        keys.extend(self.columns.0.iter().map(|(name, _)| name.as_str()));
        keys.retain(|key| !key.is_empty());
        keys.sort_unstable();
        keys.dedup();
        Enumerator::Values(keys.into_iter().map(Value::from).collect())
    }
}

/// `expires`: the codes' expiry, written as RFC 3339 (`{{ expires }}`), with the same
/// instant as a human date in `{{ expires.human }}` (and `{{ expires.rfc3339 }}`).
#[derive(Debug)]
pub struct ExpiryText {
    rfc3339: Value,
    human: Value,
}

impl ExpiryText {
    /// The two forms of one expiry, as a template value.
    #[must_use]
    pub fn value(rfc3339: &str, human: &str) -> Value {
        Value::from_object(Self {
            rfc3339: Value::from(rfc3339),
            human: Value::from(human),
        })
    }
}

impl Object for ExpiryText {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        match key.as_str()? {
            "rfc3339" => Some(self.rfc3339.clone()),
            "human" => Some(self.human.clone()),
            _ => None,
        }
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Str(&["human", "rfc3339"])
    }

    fn render(self: &Arc<Self>, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.rfc3339, f)
    }
}

/// The `date` filter: `value` (`expires`, or a cell holding an RFC 3339 instant or a
/// `YYYY-MM-DD` date) written with `format`, strftime's directives (`%d.%m.%Y`, `%-d %B %Y`,
/// `%H:%M %Z`; month and day names in English), in `tz` or else `zone`. A date without a time
/// is written as it is, in no zone.
fn date_filter(
    value: &Value,
    format: &str,
    tz: Option<&str>,
    zone: &jiff::tz::TimeZone,
) -> Result<String, minijinja::Error> {
    let invalid =
        |reason: String| minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, reason);
    let text = match value.get_attr("rfc3339") {
        Ok(rfc3339) if !rfc3339.is_undefined() => rfc3339.to_string(),
        _ => value.to_string(),
    };
    let text = text.trim();
    let zone = match tz {
        Some(name) => jiff::tz::TimeZone::get(name).map_err(|_| {
            invalid(format!(
                "date: tz={name:?} is not a known time zone; give an IANA name such as \
                 Europe/Paris"
            ))
        })?,
        None => zone.clone(),
    };
    let written = if let Ok(at) = text.parse::<jiff::Timestamp>() {
        jiff::fmt::strtime::format(format, &at.to_zoned(zone))
    } else if let Ok(day) = text.parse::<jiff::civil::Date>() {
        jiff::fmt::strtime::format(format, day)
    } else {
        return Err(invalid(format!(
            "date: {text:?} is not an RFC 3339 date and time (2026-12-15T23:59:00Z) or a date \
             (2026-12-15)"
        )));
    };
    written.map_err(|err| invalid(format!("date: cannot write {text:?} as {format:?}: {err}")))
}

/// `row`: a message's cells by their headers as written.
#[derive(Debug)]
struct Row(Arc<Vars>);

impl Object for Row {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let vars = &self.0;
        vars.columns
            .lookup(&vars.cells, key.as_str()?, |(_, header)| header)
            .cloned()
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        let headers = self.0.columns.0.iter().map(|(_, header)| header.as_str());
        Enumerator::Values(headers.map(Value::from).collect())
    }
}

/// The error for `row["Header"]` (or `row.header`) naming no column, in the expression that
/// failed, with the headers there are; `None` when the failing expression has no such use.
fn unknown_header(
    name: &str,
    source: &str,
    range: Option<std::ops::Range<usize>>,
    context: &Value,
) -> Option<Error> {
    let range = range?;
    let within = source.get(range.clone())?;
    let row = context.get_attr("row").ok()?;
    let headers: Vec<String> = row
        .try_iter()
        .ok()?
        .filter_map(|key| key.as_str().map(str::to_owned))
        .collect();
    let known = |key: &str| headers.iter().any(|h| h == key);
    let mut from = 0;
    while let Some(at) = first_use(within.get(from..)?, "row").map(|at| from + at) {
        from = at + 3;
        let rest = within.get(from..)?.trim_start();
        let key = if let Some(rest) = rest.strip_prefix('[') {
            let rest = rest.trim_start();
            let quote = rest.chars().next().filter(|c| *c == '"' || *c == '\'')?;
            let inner = rest.get(1..)?;
            inner.get(..inner.find(quote)?)
        } else if let Some(rest) = rest.strip_prefix('.') {
            let end = rest
                .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            rest.get(..end)
        } else {
            None
        };
        let Some(key) = key.filter(|key| !known(key)) else {
            continue;
        };
        let (line, column) = place(source, range.start + at).unwrap_or((1, 1));
        return Some(Error::Template {
            template: name.to_owned(),
            line,
            column,
            reason: format!(
                "undefined value: no column has the header {key:?} (there are: {})",
                headers.join(", ")
            ),
        });
    }
    None
}

/// `text` with `& < > " '` as character references.
fn write_html_escaped(out: &mut minijinja::Output<'_>, text: &str) -> Result<(), minijinja::Error> {
    let mut rest = text;
    while let Some(at) = rest.find(['&', '<', '>', '"', '\'']) {
        let (plain, tail) = rest.split_at(at);
        let reference = match tail.as_bytes().first() {
            Some(b'&') => "&amp;",
            Some(b'<') => "&lt;",
            Some(b'>') => "&gt;",
            Some(b'"') => "&quot;",
            _ => "&#x27;",
        };
        out.write_str(plain)
            .and_then(|()| out.write_str(reference))
            .map_err(minijinja::Error::from)?;
        rest = tail.get(1..).unwrap_or_default();
    }
    out.write_str(rest).map_err(minijinja::Error::from)
}

/// A header as a template variable name: `First Name` -> `first_name`, `Prénom` ->
/// `prenom`. minijinja names are ASCII: accents are dropped (the letters decomposed, their
/// marks left out), and any other character is a `_`; `row["Header"]` reaches every column.
#[must_use]
pub fn identifier(header: &str) -> String {
    use unicode_normalization::UnicodeNormalization as _;
    use unicode_normalization::char::is_combining_mark;
    let mut name = String::with_capacity(header.len());
    for c in header.nfd().filter(|c| !is_combining_mark(*c)) {
        if c.is_ascii_alphanumeric() {
            name.push(c.to_ascii_lowercase());
        } else if !name.ends_with('_') {
            name.push('_');
        }
    }
    let name = name.trim_matches('_');
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        format!("_{name}")
    } else {
        name.to_owned()
    }
}

/// Where `var` is first used as a name in `source` (the failing expression, or the whole
/// template when minijinja gives no place): not part of a longer name, and not an attribute
/// (`row.var`).
fn first_use(source: &str, var: &str) -> Option<usize> {
    let is_name = |c: char| c.is_alphanumeric() || c == '_';
    source.match_indices(var).map(|(at, _)| at).find(|&at| {
        let before = source.get(..at).and_then(|s| s.chars().next_back());
        let after = source.get(at + var.len()..).and_then(|s| s.chars().next());
        !before.is_some_and(|c| is_name(c) || c == '.') && !after.is_some_and(is_name)
    })
}

/// The 1-based line and column (in characters) of byte `at` of `source`; `None` when `at` is
/// not a character boundary within it.
fn place(source: &str, at: usize) -> Option<(usize, usize)> {
    let before = source.get(..at)?;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before.get(line_start..)?.chars().count() + 1;
    Some((before.matches('\n').count() + 1, column))
}

/// A minijinja error as the library's, with the 1-based column found from the error's byte
/// range in the template text.
fn template_error(name: &str, source: &str, err: &minijinja::Error) -> Error {
    let line = err.line().unwrap_or(1);
    let column = err
        .range()
        .and_then(|range| place(source, range.start))
        .map_or(1, |(_, column)| column);
    let reason = match err.detail() {
        Some(detail) => format!("{}: {detail}", err.kind()),
        None => err.kind().to_string(),
    };
    Error::Template {
        template: name.to_owned(),
        line,
        column,
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> Vars {
        named("Zoë")
    }

    fn named(first_name: &str) -> Vars {
        let columns = Columns::new(["First Name", "email"]);
        let mut vars = Vars::new(&columns, [first_name, "z@contoso.com"]);
        vars.set("code", "243Q1-PYRG0-DVPFF-Z9H9F-NDX66");
        vars.set("kind", "email");
        vars.set("audience", "z@contoso.com");
        vars.set(
            "expires",
            ExpiryText::value("2026-12-31T23:59:00Z", "31 December 2026, 23:59 UTC"),
        );
        vars.set("expires_human", "31 December 2026, 23:59 UTC");
        vars.set("sign_up_url", "");
        vars
    }

    #[test]
    fn the_defaults_render_every_fact() {
        let templates = Templates::new(None, None, None).unwrap();
        let rendered = templates.render(vars()).unwrap();
        assert_eq!(rendered.subject, DEFAULT_SUBJECT);
        assert!(rendered.text.contains("243Q1-PYRG0-DVPFF-Z9H9F-NDX66"));
        assert!(rendered.text.contains("z@contoso.com"));
        assert!(rendered.text.contains("31 December 2026"));
        assert!(!rendered.text.contains(" at ."), "{}", rendered.text);
        assert_eq!(rendered.html, None);
    }

    #[test]
    fn columns_are_variables_and_html_is_escaped() {
        let html = TemplateSource::new(
            "invite.html",
            "<p>{{ first_name }} {{ row['First Name'] }}</p>",
        );
        let templates = Templates::new(None, None, Some(html)).unwrap();
        let rendered = templates.render(named("<b>Zoë</b>")).unwrap();
        assert_eq!(
            rendered.html.unwrap(),
            "<p>&lt;b&gt;Zoë&lt;/b&gt; &lt;b&gt;Zoë&lt;/b&gt;</p>"
        );
        // A link stays readable, with what HTML needs escaped.
        let html = TemplateSource::new("invite.html", "<a href=\"{{ url }}\">{{ url }}</a>");
        let templates = Templates::new(None, None, Some(html)).unwrap();
        let mut vars = vars();
        vars.set("url", "https://contoso.example/signup?a=1&b='2'\"");
        assert_eq!(
            templates.render(vars).unwrap().html.unwrap(),
            "<a href=\"https://contoso.example/signup?a=1&amp;b=&#x27;2&#x27;&quot;\">\
             https://contoso.example/signup?a=1&amp;b=&#x27;2&#x27;&quot;</a>"
        );
    }

    #[test]
    fn an_unknown_variable_names_file_line_and_column() {
        let text = TemplateSource::new("invite.txt", "Hello,\nyour code: {{ cdoe }}\n");
        let templates = Templates::new(None, Some(text), None).unwrap();
        let err = templates.render(vars()).unwrap_err();
        let Error::Template {
            template,
            line,
            column,
            reason,
        } = err
        else {
            panic!("{err:?}");
        };
        assert_eq!((template.as_str(), line, column), ("invite.txt", 2, 15));
        assert!(
            reason.starts_with("undefined value: `cdoe` is not a column or a variable")
                && reason.contains("code, email, expires, expires_human, first_name"),
            "{reason}"
        );
        // A guarded unset name does not take the blame for the one that failed.
        let text = TemplateSource::new(
            "invite.txt",
            "Hi {{ nickname | default(first_name) }},\n{{ compnay }}\n",
        );
        let err = Templates::new(None, Some(text), None)
            .unwrap()
            .render(vars())
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("invite.txt:2:4: undefined value: `compnay`"),
            "{err}"
        );
        // In a subject too, and a name that only starts like a known one is still unknown.
        let subject = TemplateSource::new("--subject", "Hi {{ first_name }} {{ code_x }}");
        let err = Templates::new(Some(subject), None, None)
            .unwrap()
            .render(vars())
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("--subject:1:24: undefined value: `code_x`"),
            "{err}"
        );
    }

    #[test]
    fn an_unknown_header_is_named_with_the_headers_there_are() {
        for (text, key) in [
            ("Dear {{ row[\"Firstname\"] }},\n", "Firstname"),
            ("Dear {{ row['Last Name'] }},\n", "Last Name"),
            ("Dear {{ row.team }},\n", "team"),
        ] {
            let templates =
                Templates::new(None, Some(TemplateSource::new("invite.txt", text)), None).unwrap();
            let err = templates.render(vars()).unwrap_err().to_string();
            assert!(
                err.starts_with(&format!(
                    "invite.txt:1:9: undefined value: no column has the header {key:?} (there \
                     are: First Name, email)"
                )),
                "{err}"
            );
        }
        // A header that exists renders.
        let text = TemplateSource::new("invite.txt", "Dear {{ row[\"First Name\"] }}");
        let templates = Templates::new(None, Some(text), None).unwrap();
        assert_eq!(templates.render(vars()).unwrap().text, "Dear Zoë");
    }

    #[test]
    fn expires_is_rfc_3339_with_a_human_date_beside_it() {
        let text = TemplateSource::new(
            "invite.txt",
            "{{ expires }} | {{ expires.human }} | {{ expires.rfc3339 }} | {{ expires_human }}",
        );
        let templates = Templates::new(None, Some(text), None).unwrap();
        assert_eq!(
            templates.render(vars()).unwrap().text,
            "2026-12-31T23:59:00Z | 31 December 2026, 23:59 UTC | 2026-12-31T23:59:00Z | 31 \
             December 2026, 23:59 UTC"
        );
    }

    #[test]
    fn dates_follow_the_time_zone_and_the_date_filter_takes_a_format() {
        let text = TemplateSource::new(
            "invite.txt",
            "{{ expires.human }}\n{{ expires | date(\"%d.%m.%Y %H:%M %Z\") }}\n\
             {{ expires | date(\"%Y-%m-%d %H:%M\", tz=\"America/New_York\") }}\n\
             {{ \"2027-03-01\" | date(\"%-d %B %Y\") }}",
        );
        let mut templates = Templates::new(None, Some(text), None).unwrap();
        // 2026-12-31T23:59:00Z
        let at = 1_798_761_540;
        assert_eq!(templates.human_date(at), "31 December 2026, 23:59 UTC");
        assert_eq!(
            templates.render(vars()).unwrap().text,
            "31 December 2026, 23:59 UTC\n31.12.2026 23:59 UTC\n2026-12-31 18:59\n1 March 2027"
        );
        templates.set_time_zone(jiff::tz::TimeZone::get("Europe/Paris").unwrap());
        assert_eq!(templates.human_date(at), "1 January 2027, 00:59 CET");
        // expires.human is made by the caller (prepare) with human_date; the filter follows
        // the zone by itself.
        let text = templates.render(vars()).unwrap().text;
        assert!(
            text.contains("\n01.01.2027 00:59 CET\n2026-12-31 18:59\n"),
            "{text}"
        );
        let fixed = jiff::tz::TimeZone::fixed(jiff::tz::offset(2));
        templates.set_time_zone(fixed);
        assert_eq!(templates.human_date(at), "1 January 2027, 01:59 +02");
    }

    #[test]
    fn the_date_filter_says_what_it_cannot_read() {
        for (template, why) in [
            (
                "{{ first_name | date(\"%d\") }}",
                "is not an RFC 3339 date and time",
            ),
            (
                "{{ expires | date(\"%d\", tz=\"Mars/Olympus\") }}",
                "not a known time zone",
            ),
            ("{{ expires | date(\"%d\", zone=\"UTC\") }}", "zone"),
        ] {
            let text = TemplateSource::new("invite.txt", template);
            let templates = Templates::new(None, Some(text), None).unwrap();
            let err = templates.render(vars()).unwrap_err().to_string();
            assert!(
                err.contains(why) && err.starts_with("invite.txt:1:"),
                "{template}: {err}"
            );
        }
    }

    #[test]
    fn a_syntax_error_is_found_when_compiling() {
        let subject = TemplateSource::new("--subject", "Hi {{ first_name ");
        let err = Templates::new(Some(subject), None, None).unwrap_err();
        assert!(err.to_string().starts_with("--subject:1:"), "{err}");
    }

    #[test]
    fn headers_become_identifiers() {
        assert_eq!(identifier("First Name"), "first_name");
        assert_eq!(identifier("E-mail Address"), "e_mail_address");
        assert_eq!(identifier("2nd"), "_2nd");
        assert_eq!(identifier("---"), "");
        // Names a template can use: ASCII, accents dropped.
        assert_eq!(identifier("Prénom"), "prenom");
        assert_eq!(identifier("Société / Ünit"), "societe_unit");
        assert_eq!(identifier("名前"), "");
        let templates = Templates::new(
            Some(TemplateSource::new("--subject", "Bonjour {{ prenom }}")),
            Some(TemplateSource::new("invite.txt", "{{ code }}")),
            None,
        )
        .unwrap();
        let columns = Columns::new(["Prénom", "email"]);
        let mut vars = Vars::new(&columns, ["Zoë", "z@contoso.com"]);
        vars.set("code", "x");
        assert_eq!(templates.render(vars).unwrap().subject, "Bonjour Zoë");
    }

    #[test]
    fn a_subject_is_one_line() {
        let subject =
            TemplateSource::new("--subject", "Hi\r\nBcc: x@evil.example {{ first_name }}");
        let templates = Templates::new(Some(subject), None, None).unwrap();
        assert_eq!(
            templates.render(vars()).unwrap().subject,
            "Hi Bcc: x@evil.example Zoë"
        );
    }
}
