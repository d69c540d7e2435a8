//! Rows as the engines see them: the values bound to a statement ([`Param`]) and the decoding
//! of a result row into a record ([`Row`]), both engine-neutral.
//!
//! A record's columns are listed once, by [`columns!`] in `schema`: that one list is the
//! column list of its statements, the order its values are bound in, and the order it is
//! decoded in (by position, from a rusqlite row or either sqlx row alike). Each field's type
//! says how it is stored ([`Column`]): a domain enum is text, decoded once here, so that the
//! rest of the server never sees the string.

use std::str::FromStr;

use super::error::{StoreError, StoreResult};
use crate::domain::{
    AuditAction, AuditOutcome, AuthMethod, DeliveryState, EventType, Names, OAuthErrorCode,
    ProtocolValue, SpecVersion,
};

/// One bound value; statement parameters `$1`, `$2`, … are the slice in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Param<'a> {
    Text(&'a str),
    OptText(Option<&'a str>),
    Int(i64),
    OptInt(Option<i64>),
    Bool(bool),
}

/// Read access to the cells of one result row, by position: what rusqlite's and sqlx's rows
/// have in common. `None` is SQL NULL.
pub(super) trait Cells {
    fn text(&self, at: usize) -> StoreResult<Option<String>>;
    fn int(&self, at: usize) -> StoreResult<Option<i64>>;
    fn boolean(&self, at: usize) -> StoreResult<Option<bool>>;
    fn is_null(&self, at: usize) -> StoreResult<bool>;
}

/// A cursor over a row's cells: each [`Column::read`] takes the next one.
pub(super) struct Cursor<'r> {
    row: &'r dyn Cells,
    at: usize,
}

impl<'r> Cursor<'r> {
    pub fn new(row: &'r dyn Cells) -> Self {
        Self { row, at: 0 }
    }

    /// The next cell, decoded by `get`, and its position (for messages).
    fn next<T>(&mut self, get: impl FnOnce(&dyn Cells, usize) -> StoreResult<T>) -> StoreResult<T> {
        let at = self.at;
        self.at += 1;
        get(self.row, at)
    }

    /// Whether the next cell is NULL (an outer join's missing side), without taking it.
    pub fn next_is_null(&self) -> StoreResult<bool> {
        self.row.is_null(self.at)
    }

    /// Passes over `n` cells (a missing record of a join).
    pub fn skip(&mut self, n: usize) {
        self.at += n;
    }
}

/// A cell that was NULL where the record has a value: the schema and the record disagree.
fn required<T>(value: Option<T>, at: usize) -> StoreResult<T> {
    value.ok_or_else(|| StoreError::Other(format!("column {at}: unexpected NULL")))
}

/// How a field's type is stored in one column.
pub(super) trait Column: Sized {
    fn read(c: &mut Cursor<'_>) -> StoreResult<Self>;
    fn param(&self) -> Param<'_>;
}

impl Column for String {
    fn read(c: &mut Cursor<'_>) -> StoreResult<Self> {
        c.next(|r, at| required(r.text(at)?, at))
    }
    fn param(&self) -> Param<'_> {
        Param::Text(self)
    }
}

impl Column for Option<String> {
    fn read(c: &mut Cursor<'_>) -> StoreResult<Self> {
        c.next(|r, at| r.text(at))
    }
    fn param(&self) -> Param<'_> {
        Param::OptText(self.as_deref())
    }
}

impl Column for i64 {
    fn read(c: &mut Cursor<'_>) -> StoreResult<Self> {
        c.next(|r, at| required(r.int(at)?, at))
    }
    fn param(&self) -> Param<'_> {
        Param::Int(*self)
    }
}

impl Column for Option<i64> {
    fn read(c: &mut Cursor<'_>) -> StoreResult<Self> {
        c.next(|r, at| r.int(at))
    }
    fn param(&self) -> Param<'_> {
        Param::OptInt(*self)
    }
}

impl Column for bool {
    fn read(c: &mut Cursor<'_>) -> StoreResult<Self> {
        c.next(|r, at| required(r.boolean(at)?, at))
    }
    fn param(&self) -> Param<'_> {
        Param::Bool(*self)
    }
}

/// Text that must name a value of `T`; anything else is a row this server did not write.
fn parse<T: FromStr>(text: &str, at: usize) -> StoreResult<T>
where
    <T as FromStr>::Err: std::fmt::Display,
{
    text.parse()
        .map_err(|e| StoreError::Other(format!("column {at}: {e}")))
}

/// A domain enum stored as its protocol name.
pub(super) trait StoredAsName: ProtocolValue<Err = crate::domain::UnknownValue> {
    /// The value `text` names; anything else is a row this server did not write.
    fn from_stored(text: &str, at: usize) -> StoreResult<Self> {
        parse(text, at)
    }
}

impl StoredAsName for AuthMethod {}
impl StoredAsName for SpecVersion {}
impl StoredAsName for AuditOutcome {}
impl StoredAsName for EventType {}
impl StoredAsName for DeliveryState {}
impl StoredAsName for OAuthErrorCode {}

impl StoredAsName for AuditAction {
    /// Audit records are never rewritten (the log is append-only), so the name that servers
    /// before the one `delete` action wrote for an operator's deletion still reads.
    fn from_stored(text: &str, at: usize) -> StoreResult<Self> {
        match text {
            "client.delete" => Ok(Self::Delete),
            _ => parse(text, at),
        }
    }
}

impl<T: StoredAsName> Column for T {
    fn read(c: &mut Cursor<'_>) -> StoreResult<Self> {
        c.next(|r, at| T::from_stored(&required(r.text(at)?, at)?, at))
    }
    fn param(&self) -> Param<'_> {
        Param::Text(self.name())
    }
}

impl<T: StoredAsName> Column for Option<T> {
    fn read(c: &mut Cursor<'_>) -> StoreResult<Self> {
        c.next(|r, at| r.text(at)?.map(|t| T::from_stored(&t, at)).transpose())
    }
    fn param(&self) -> Param<'_> {
        Param::OptText(self.map(ProtocolValue::name))
    }
}

/// Space-separated, in their order; read leniently (`Names::from_stored`).
impl<T: ProtocolValue> Column for Names<T> {
    fn read(c: &mut Cursor<'_>) -> StoreResult<Self> {
        c.next(|r, at| Ok(Names::from_stored(&required(r.text(at)?, at)?)))
    }
    fn param(&self) -> Param<'_> {
        Param::Text(self.as_str())
    }
}

/// A record decoded from consecutive cells of a row.
pub(super) trait Row: Sized {
    /// How many cells it takes.
    const WIDTH: usize;
    fn read(c: &mut Cursor<'_>) -> StoreResult<Self>;

    /// The record from the start of `row`.
    fn decode(row: &dyn Cells) -> StoreResult<Self> {
        Self::read(&mut Cursor::new(row))
    }
}

/// A record of an outer join: absent when its first cell is NULL.
impl<T: Row> Row for Option<T> {
    const WIDTH: usize = T::WIDTH;
    fn read(c: &mut Cursor<'_>) -> StoreResult<Self> {
        if c.next_is_null()? {
            c.skip(T::WIDTH);
            return Ok(None);
        }
        T::read(c).map(Some)
    }
}

impl<A: Column> Row for (A,) {
    const WIDTH: usize = 1;
    fn read(c: &mut Cursor<'_>) -> StoreResult<Self> {
        Ok((A::read(c)?,))
    }
}

impl<A: Column, B: Column> Row for (A, B) {
    const WIDTH: usize = 2;
    fn read(c: &mut Cursor<'_>) -> StoreResult<Self> {
        Ok((A::read(c)?, B::read(c)?))
    }
}

/// A column's name in SQL: the field's own, or the one given (`field = "type"`).
macro_rules! column_name {
    ($field:ident) => {
        stringify!($field)
    };
    ($field:ident = $column:literal) => {
        $column
    };
}
pub(super) use column_name;

/// How many fields a list names.
macro_rules! count_fields {
    () => { 0usize };
    ($first:ident $($rest:ident)*) => { 1usize + $crate::store::row::count_fields!($($rest)*) };
}
pub(super) use count_fields;

/// Declares a record's columns once, in their table order:
///
/// ```ignore
/// columns! { client_columns => ClientRecord { client_id, software_id, … } }
/// ```
///
/// makes `client_columns!()` (the column list, for `concat!`ed statements), [`Row`] for the
/// record (decoded in that order, after the fields named in `after [...]`, which its reads
/// select first), and `values()`, its parameters in that order for an insert (unless the
/// list is `read only`). A field missing from the list does not compile.
macro_rules! columns {
    (
        $list:ident => $record:ident $(after [$($key:ident),+])? $(read $only:ident)? {
            $first:ident $(= $first_column:literal)? $(, $field:ident $(= $column:literal)?)* $(,)?
        }
    ) => {
        macro_rules! $list {
            () => {
                concat!(
                    $crate::store::row::column_name!($first $(= $first_column)?)
                    $(, ", ", $crate::store::row::column_name!($field $(= $column)?))*
                )
            };
        }

        impl $crate::store::row::Row for $record {
            const WIDTH: usize =
                $crate::store::row::count_fields!($($($key)+)? $first $($field)*);
            fn read(
                c: &mut $crate::store::row::Cursor<'_>,
            ) -> $crate::store::StoreResult<Self> {
                use $crate::store::row::Column;
                // Fields are evaluated in the order written: the order of the columns.
                Ok(Self {
                    $($($key: Column::read(c)?,)+)?
                    $first: Column::read(c)?,
                    $($field: Column::read(c)?,)*
                })
            }
        }

        $crate::store::row::columns!(@values $($only)? $record { $first $($field)* });
    };
    (@values only $record:ident { $($field:ident)* }) => {};
    (@values $record:ident { $($field:ident)* }) => {
        impl $record {
            /// Its values in the order of its column list (an insert's parameters).
            pub(in $crate::store) fn values(
                &self,
            ) -> [$crate::store::row::Param<'_>; $crate::store::row::count_fields!($($field)*)]
            {
                use $crate::store::row::Column;
                [$(self.$field.param()),*]
            }
        }
    };
}
pub(super) use columns;

impl Cells for rusqlite::Row<'_> {
    fn text(&self, at: usize) -> StoreResult<Option<String>> {
        self.get(at).map_err(|e| StoreError::Other(e.to_string()))
    }
    fn int(&self, at: usize) -> StoreResult<Option<i64>> {
        self.get(at).map_err(|e| StoreError::Other(e.to_string()))
    }
    fn boolean(&self, at: usize) -> StoreResult<Option<bool>> {
        self.get(at).map_err(|e| StoreError::Other(e.to_string()))
    }
    fn is_null(&self, at: usize) -> StoreResult<bool> {
        let cell = self
            .get_ref(at)
            .map_err(|e| StoreError::Other(e.to_string()))?;
        Ok(cell == rusqlite::types::ValueRef::Null)
    }
}

/// [`Cells`] for an sqlx row type.
macro_rules! sqlx_cells {
    ($row:ty) => {
        impl Cells for $row {
            fn text(&self, at: usize) -> StoreResult<Option<String>> {
                sqlx::Row::try_get(self, at).map_err(StoreError::from_sqlx)
            }
            fn int(&self, at: usize) -> StoreResult<Option<i64>> {
                sqlx::Row::try_get(self, at).map_err(StoreError::from_sqlx)
            }
            fn boolean(&self, at: usize) -> StoreResult<Option<bool>> {
                sqlx::Row::try_get(self, at).map_err(StoreError::from_sqlx)
            }
            fn is_null(&self, at: usize) -> StoreResult<bool> {
                use sqlx::ValueRef;
                let cell = sqlx::Row::try_get_raw(self, at).map_err(StoreError::from_sqlx)?;
                Ok(cell.is_null())
            }
        }
    };
}
sqlx_cells!(sqlx::sqlite::SqliteRow);
sqlx_cells!(sqlx::postgres::PgRow);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enums_are_read_by_name_and_old_names_still_read() {
        assert_eq!(
            AuditAction::from_stored("client.delete", 1),
            Ok(AuditAction::Delete)
        );
        assert_eq!(
            AuditAction::from_stored("token.issue", 1),
            Ok(AuditAction::TokenIssue)
        );
        assert!(matches!(
            SpecVersion::from_stored("9.9", 3),
            Err(StoreError::Other(m)) if m.starts_with("column 3:")
        ));
    }
}
