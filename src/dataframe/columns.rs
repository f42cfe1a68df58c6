//! Column helpers for JSON rows: read, write and filter on a field.

use anyhow::{anyhow, Context as _};
use serde_json::{Map, Value};

use super::StreamingDataFrame;

impl StreamingDataFrame<Value> {
    /// Replaces each row by the value of its field `name`.
    ///
    /// A row that is not an object or lacks the field is an error naming the
    /// field (and, through the error callback, the message).
    ///
    /// # Examples
    ///
    /// ```
    /// # use kstreams::{Application, Topic, TestDriver, TestMessage};
    /// # use serde_json::{json, Value};
    /// # let app = Application::builder().use_embedded_broker().build().unwrap();
    /// let rows = Topic::<Value>::new("rows");
    /// let users = Topic::<Value>::new("users");
    /// app.dataframe(&rows).column("user").to_topic(&users);
    ///
    /// let mut driver = TestDriver::new(&app).unwrap();
    /// driver.push(&rows, TestMessage::new(json!({"user": "ada", "amount": 3}))).unwrap();
    /// let err = driver.push(&rows, TestMessage::new(json!({"amount": 4}))).unwrap_err();
    /// assert!(err.to_string().contains("field \"user\""));
    /// assert_eq!(driver.values(&users).unwrap(), [json!("ada")]);
    /// ```
    pub fn column(self, name: impl Into<String>) -> Self {
        let name = name.into();
        self.try_apply(move |mut row| Ok(field_mut(&mut row, &name)?.take()))
    }

    /// Sets field `name` of each row to what `f` computes from the row,
    /// adding the field if it is missing.
    ///
    /// # Examples
    ///
    /// ```
    /// # use kstreams::{Application, Topic, TestDriver, TestMessage};
    /// # use serde_json::{json, Value};
    /// # let app = Application::builder().use_embedded_broker().build().unwrap();
    /// let rows = Topic::<Value>::new("rows");
    /// let out = Topic::<Value>::new("with-total");
    /// app.dataframe(&rows)
    ///     .set_column("total", |row| json!(row["price"].as_f64().unwrap_or(0.0) * 2.0))
    ///     .to_topic(&out);
    ///
    /// let mut driver = TestDriver::new(&app).unwrap();
    /// driver.push(&rows, TestMessage::new(json!({"price": 1.5}))).unwrap();
    /// assert_eq!(driver.values(&out).unwrap(), [json!({"price": 1.5, "total": 3.0})]);
    /// ```
    pub fn set_column(
        self,
        name: impl Into<String>,
        mut f: impl FnMut(&Value) -> Value + Send + 'static,
    ) -> Self {
        let name = name.into();
        self.try_update(move |row| {
            let value = f(row);
            object_mut(row)?.insert(name.clone(), value);
            Ok(())
        })
    }

    /// Keeps the rows whose field `name` satisfies `predicate`.
    ///
    /// A row that lacks the field is an error naming the field.
    ///
    /// # Examples
    ///
    /// ```
    /// # use kstreams::{Application, Topic, TestDriver, TestMessage};
    /// # use serde_json::{json, Value};
    /// # let app = Application::builder().use_embedded_broker().build().unwrap();
    /// let rows = Topic::<Value>::new("rows");
    /// let big = Topic::<Value>::new("big-rows");
    /// app.dataframe(&rows)
    ///     .filter_column("amount", |a| a.as_f64().is_some_and(|a| a > 100.0))
    ///     .to_topic(&big);
    ///
    /// let mut driver = TestDriver::new(&app).unwrap();
    /// driver.push(&rows, TestMessage::new(json!({"amount": 150}))).unwrap();
    /// driver.push(&rows, TestMessage::new(json!({"amount": 50}))).unwrap();
    /// assert_eq!(driver.values(&big).unwrap(), [json!({"amount": 150})]);
    /// ```
    pub fn filter_column(
        self,
        name: impl Into<String>,
        mut predicate: impl FnMut(&Value) -> bool + Send + 'static,
    ) -> Self {
        let name = name.into();
        self.try_filter(move |row| Ok(predicate(field(row, &name)?)))
    }

    /// Keeps only the listed fields of each row.
    ///
    /// A row that lacks one of them is an error naming the field.
    ///
    /// # Examples
    ///
    /// ```
    /// # use kstreams::{Application, Topic, TestDriver, TestMessage};
    /// # use serde_json::{json, Value};
    /// # let app = Application::builder().use_embedded_broker().build().unwrap();
    /// let rows = Topic::<Value>::new("rows");
    /// let slim = Topic::<Value>::new("slim");
    /// app.dataframe(&rows).select(["user", "amount"]).to_topic(&slim);
    ///
    /// let mut driver = TestDriver::new(&app).unwrap();
    /// driver.push(&rows, TestMessage::new(json!({"user": "ada", "amount": 3, "ip": "::1"}))).unwrap();
    /// assert_eq!(driver.values(&slim).unwrap(), [json!({"user": "ada", "amount": 3})]);
    /// ```
    pub fn select<S: Into<String>>(self, names: impl IntoIterator<Item = S>) -> Self {
        let names: Vec<String> = names.into_iter().map(Into::into).collect();
        self.try_apply(move |mut row| {
            let mut selected = Map::with_capacity(names.len());
            for name in &names {
                selected.insert(name.clone(), field_mut(&mut row, name)?.take());
            }
            Ok(Value::Object(selected))
        })
    }

    /// Removes the listed fields from each row; missing ones are ignored.
    ///
    /// # Examples
    ///
    /// ```
    /// # use kstreams::{Application, Topic, TestDriver, TestMessage};
    /// # use serde_json::{json, Value};
    /// # let app = Application::builder().use_embedded_broker().build().unwrap();
    /// let rows = Topic::<Value>::new("rows");
    /// let public = Topic::<Value>::new("public");
    /// app.dataframe(&rows).drop_columns(["ip"]).to_topic(&public);
    ///
    /// let mut driver = TestDriver::new(&app).unwrap();
    /// driver.push(&rows, TestMessage::new(json!({"user": "ada", "ip": "::1"}))).unwrap();
    /// assert_eq!(driver.values(&public).unwrap(), [json!({"user": "ada"})]);
    /// ```
    pub fn drop_columns<S: Into<String>>(self, names: impl IntoIterator<Item = S>) -> Self {
        let names: Vec<String> = names.into_iter().map(Into::into).collect();
        self.try_update(move |row| {
            let object = object_mut(row)?;
            for name in &names {
                object.remove(name);
            }
            Ok(())
        })
    }
}

fn object_mut(row: &mut Value) -> anyhow::Result<&mut Map<String, Value>> {
    let kind = kind(row);
    row.as_object_mut()
        .ok_or_else(|| anyhow!("expected a JSON object, got {kind}"))
}

fn field<'a>(row: &'a Value, name: &str) -> anyhow::Result<&'a Value> {
    row.as_object()
        .ok_or_else(|| anyhow!("expected a JSON object, got {}", kind(row)))?
        .get(name)
        .with_context(|| format!("field {name:?} is missing"))
}

fn field_mut<'a>(row: &'a mut Value, name: &str) -> anyhow::Result<&'a mut Value> {
    object_mut(row)?
        .get_mut(name)
        .with_context(|| format!("field {name:?} is missing"))
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
