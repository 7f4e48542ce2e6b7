//! Feature columns: how a table's columns become a model's inputs. A column of numbers is one
//! input; a column of words (categories) is one 0/1 input per category (one-hot encoding, as
//! pandas' `get_dummies` and scikit-learn's `OneHotEncoder` do), so that a file with a `sex`
//! column of `female` and `male` trains without being encoded by hand.

use serde::{Deserialize, Serialize};

/// At most this many categories in a column of words: more are likely names, identifiers or
/// free text, whose one-hot inputs would not generalise to new rows.
pub const MAX_CATEGORIES: usize = 100;

/// One feature column of a data set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeatureColumn {
    /// The column's name (its header in a CSV file).
    pub name: String,
    /// For a column of categories, the categories in the order of their inputs (sorted as
    /// text); `None` for a column of numbers.
    pub categories: Option<Vec<String>>,
}

impl FeatureColumn {
    /// A column of numbers: one input.
    pub fn numeric(name: impl Into<String>) -> FeatureColumn {
        FeatureColumn {
            name: name.into(),
            categories: None,
        }
    }

    /// How many model inputs the column becomes.
    pub fn width(&self) -> usize {
        self.categories.as_ref().map_or(1, Vec::len)
    }

    /// The names of its inputs: the column's own, or `name=category` for each category.
    pub fn input_names(&self) -> Vec<String> {
        match &self.categories {
            None => vec![self.name.clone()],
            Some(categories) => categories
                .iter()
                .map(|category| format!("{}={category}", self.name))
                .collect(),
        }
    }
}

/// The inputs of `columns`, one name per model input in their order.
pub fn input_names(columns: &[FeatureColumn]) -> Vec<String> {
    columns
        .iter()
        .flat_map(FeatureColumn::input_names)
        .collect()
}

/// How many model inputs `columns` become.
pub fn input_width(columns: &[FeatureColumn]) -> usize {
    columns.iter().map(FeatureColumn::width).sum()
}

/// Numeric columns named `names`: the feature columns of a data set without categories.
pub fn numeric_columns<S: Into<String>>(names: impl IntoIterator<Item = S>) -> Vec<FeatureColumn> {
    names.into_iter().map(FeatureColumn::numeric).collect()
}
