//! Loading a plan from TOML (feature `serde`, on by default).

use serde::Deserialize;

use crate::{DialPlan, DialPlanBuilder, Error, Limits, MatchMode, Pattern};

/// A plan file: `[[connection]]` tables, in order.
///
/// ```toml
/// [[connection]]
/// name = "alice-pbx"
/// patterns = ["4[0-9]{3}"]
///
/// [[connection]]
/// name = "pstn"
/// patterns = ["9(0[0-9]+)", "^0[0-9]{9,10}$", ".*"]
/// rewrite  = ["$1",         "",               ""]  # optional, one per pattern, "" for none
/// ```
///
/// Unknown keys are rejected, so that a typo such as `pattern = [...]`
/// fails loudly instead of leaving a connection without patterns.
///
/// ```
/// use siplink_dialplan::{Limits, MatchMode, PlanConfig};
///
/// let config = PlanConfig::from_toml(r#"
///     [[connection]]
///     name = "pstn"
///     patterns = ["9(0[0-9]+)", ".*"]
///     rewrite = ["$1", ""]
/// "#)?;
/// let plan = config.build(MatchMode::FullMatch, Limits::default())?;
/// let route = plan.lookup("9030123").unwrap();
/// assert_eq!((route.connection().as_str(), route.rewritten().as_ref()), ("pstn", "030123"));
/// # Ok::<(), siplink_dialplan::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanConfig {
    /// The connections, in order.
    #[serde(rename = "connection", default)]
    pub connections: Vec<ConnectionConfig>,
}

/// One `[[connection]]` table of a [`PlanConfig`].
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionConfig {
    /// The connection's name, used as its id in the plan.
    pub name: String,
    /// Its dial patterns, in order.
    pub patterns: Vec<String>,
    /// Rewrite templates: empty, or one per pattern (`""` for none).
    #[serde(default)]
    pub rewrite: Vec<String>,
}

impl PlanConfig {
    /// Parses a plan file.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] with the TOML parser's message (line and column
    /// included) for malformed TOML, a missing `name` or `patterns`, or an
    /// unknown key.
    pub fn from_toml(text: &str) -> Result<Self, Error> {
        toml::from_str(text).map_err(|err| Error::Config {
            message: err.to_string().trim_end().to_owned(),
        })
    }

    /// A [`DialPlanBuilder`] holding these connections, to set options
    /// before building.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] if a connection's `rewrite` list is neither empty
    /// nor as long as its `patterns` list.
    pub fn to_builder(&self) -> Result<DialPlanBuilder<String>, Error> {
        let mut builder = DialPlanBuilder::new();
        for (i, connection) in self.connections.iter().enumerate() {
            let ConnectionConfig {
                name,
                patterns,
                rewrite,
            } = connection;
            if !rewrite.is_empty() && rewrite.len() != patterns.len() {
                return Err(Error::Config {
                    message: format!(
                        "connection {} ({name:?}) has {} pattern{} but {} rewrite{} \
                         (give one per pattern, \"\" for none)",
                        i + 1,
                        patterns.len(),
                        if patterns.len() == 1 { "" } else { "s" },
                        rewrite.len(),
                        if rewrite.len() == 1 { "" } else { "s" },
                    ),
                });
            }
            let list = patterns.iter().enumerate().map(|(j, regex)| {
                let pattern = Pattern::new(regex.as_str());
                match rewrite.get(j) {
                    Some(template) if !template.is_empty() => {
                        pattern.with_rewrite(template.as_str())
                    }
                    _ => pattern,
                }
            });
            builder = builder.connection(name.clone(), list);
        }
        Ok(builder)
    }

    /// Builds the plan.
    ///
    /// # Errors
    ///
    /// As [`PlanConfig::to_builder`] and [`DialPlanBuilder::build`].
    pub fn build(&self, mode: MatchMode, limits: Limits) -> Result<DialPlan<String>, Error> {
        self.to_builder()?.match_mode(mode).limits(limits).build()
    }
}
