# Turn a JSON payload into exactly the data.frame the model wants, or say precisely what is
# wrong, with the rules and messages of the Python runtime (mlhub.serving.validation):
#
#   {"instances": [[5.1, "pro"], ...]}                  rows, in signature order
#   {"instances": [{"temp": 5.1, "plan": "pro"}, ...]}  records, keyed by input name
#   {"columns": ["plan", "temp"], "data": [[...]]}      columnar, any column order
#
# JSON null is a missing value (NA) in number, string and category inputs; a model that does
# not take missing numbers (schema$refuse_missing, set by model.R's accepts_missing) gets a 400
# naming the first null number instead. Booleans are read as 0/1 in number inputs; strings are
# never read as numbers. Category inputs are R factors
# with the example's levels: any other value is refused, naming the levels.

SHOW <- 5L
# EXPECTED (each type in words) is in types.R, generated from the one signature type table

json_type <- function(value) {
  if (is.null(value)) return("null")
  if (is.list(value)) return(if (is.null(names(value))) "a list" else "an object")
  if (is.logical(value)) return("a boolean")
  if (is.numeric(value)) return("a number")
  if (is.character(value)) return("a string")
  class(value)[1]
}

show_value <- function(value) {
  if (is.null(value) || is.list(value)) return(json_type(value))
  if (is.character(value)) return(sprintf("'%s'", value))
  if (is.logical(value)) return(if (isTRUE(value)) "true" else "false")
  format(value, digits = 15)
}

quote_names <- function(items) {
  items <- as.character(items)
  shown <- paste(sprintf("'%s'", head(items, SHOW)), collapse = ", ")
  if (length(items) > SHOW) shown <- sprintf("%s ... (%d in all)", shown, length(items))
  shown
}

is_record <- function(x) is.list(x) && !is.null(names(x))
is_row <- function(x) is.list(x) && is.null(names(x))

# The compiled signature (NULL signature: the model alone judges its input).
compile_schema <- function(signature) {
  if (is.null(signature)) return(NULL)
  inputs <- signature$inputs
  names <- vapply(inputs, function(i) as.character(i$name), "")
  types <- vapply(inputs, function(i) as.character(i$type), "")
  levels <- lapply(inputs, function(i) as.character(unlist(i$levels)))
  names(levels) <- names
  list(kind = signature$kind %||% "dataframe", names = names, types = types, levels = levels,
       width = length(names))
}

from_payload <- function(schema, body) {
  if (!is_record(body)) {
    invalid_input(sprintf(
      'the body must be a JSON object, not %s: send {"instances": [[...], ...]}', json_type(body)),
      list(got = json_type(body)))
  }
  if (!is.null(names(body)) && "instances" %in% names(body)) return(from_instances(schema, body$instances))
  if (any(c("columns", "data") %in% names(body))) {
    return(from_columnar(schema, body$columns, body$data))
  }
  hint <- if ("inputs" %in% names(body)) {
    " (Open Inference Protocol tensors go to POST /v2/models/<name>/infer)"
  } else ""
  invalid_input(sprintf(paste0(
    'the body has no "instances": send {"instances": [[...], ...]} (rows in the order %s), ',
    '{"instances": [{...}]} (records) or {"columns": [...], "data": [[...]]}%s'),
    quote_names(schema$names), hint),
    list(keys = head(names(body), SHOW), expected_inputs = schema$names))
}

from_instances <- function(schema, instances) {
  if (!is_row(instances) || length(instances) == 0) {
    got <- if (is.list(instances) && length(instances) == 0) "an empty list" else json_type(instances)
    invalid_input(sprintf(
      '"instances" must be a non-empty list of rows (lists) or records (objects), got %s', got),
      list(field = "instances"))
  }
  first <- instances[[1]]
  if (is_record(first)) return(from_records(schema, instances))
  if (is_row(first)) return(from_rows(schema, instances))
  if (schema$width == 1) return(from_rows(schema, lapply(instances, list)))
  invalid_input(sprintf(paste0(
    "instance 0 is %s; each instance must be a row (a list of %d values in the order %s) ",
    "or a record (an object keyed by input name)"),
    json_type(first), schema$width, quote_names(schema$names)),
    list(row = 0L, got = json_type(first)))
}

from_records <- function(schema, records) {
  expected <- schema$names
  for (i in seq_along(records)) {
    rec <- records[[i]]
    if (!is_record(rec)) {
      invalid_input(sprintf(paste0(
        "instance %d is %s, but instance 0 is a record: send all instances as records ",
        "(objects) or all as rows (lists)"), i - 1L, json_type(rec)),
        list(row = i - 1L, got = json_type(rec)))
    }
    keys <- names(rec)
    if (length(keys) != length(expected) || !setequal(keys, expected)) {
      missing <- setdiff(expected, keys)
      unknown <- setdiff(keys, expected)
      parts <- c(if (length(missing)) paste("misses", quote_names(missing)),
                 if (length(unknown)) paste("has unknown keys", quote_names(unknown)))
      invalid_input(sprintf("record %d %s; the model's inputs are %s",
                            i - 1L, paste(parts, collapse = " and "), quote_names(expected)),
                    list(row = i - 1L, missing = I(missing), unknown = I(unknown)))
    }
  }
  columns <- lapply(expected, function(name) lapply(records, function(r) r[[name]]))
  to_frame(schema, columns)
}

from_rows <- function(schema, rows) {
  width <- schema$width
  for (i in seq_along(rows)) {
    row <- rows[[i]]
    if (!is_row(row) || length(row) != width) {
      if (!is_row(row)) {
        got <- json_type(row)
        msg <- sprintf("row %d is %s, but instance 0 is a row", i - 1L, got)
      } else {
        got <- length(row)
        msg <- sprintf("row %d has %d values, but the model expects %d", i - 1L, got, width)
      }
      invalid_input(sprintf("%s: each row lists the inputs %s in this order",
                            msg, quote_names(schema$names)),
                    list(row = i - 1L, expected = width, got = got))
    }
  }
  columns <- lapply(seq_len(width), function(j) lapply(rows, function(r) r[[j]]))
  to_frame(schema, columns)
}

from_columnar <- function(schema, columns, data) {
  if (!is_row(columns) || !all(vapply(columns, is.character, TRUE))) {
    invalid_input('"columns" must be a list of input names, with "data" a list of rows',
                  list(field = "columns"))
  }
  if (!is_row(data) || length(data) == 0) {
    invalid_input('"data" must be a non-empty list of rows', list(field = "data"))
  }
  columns <- unlist(columns)
  missing <- setdiff(schema$names, columns)
  unknown <- setdiff(columns, schema$names)
  if (length(missing) || length(unknown) || length(columns) != schema$width) {
    invalid_input(sprintf(
      '"columns" must name each input once: missing %s, unknown %s; the inputs are %s',
      if (length(missing)) quote_names(missing) else "none",
      if (length(unknown)) quote_names(unknown) else "none", quote_names(schema$names)),
      list(missing = I(missing), unknown = I(unknown)))
  }
  for (i in seq_along(data)) {
    if (!is_row(data[[i]]) || length(data[[i]]) != schema$width) {
      invalid_input(sprintf("data row %d must be a list of %d values, one per column",
                            i - 1L, schema$width), list(row = i - 1L, expected = schema$width))
    }
  }
  order <- match(schema$names, columns)
  to_frame(schema, lapply(order, function(k) lapply(data, function(r) r[[k]])))
}

# {name: [values...]} (one list per input, e.g. v2 tensors) -> data.frame.
from_columns <- function(schema, columns) {
  missing <- setdiff(schema$names, names(columns))
  unknown <- setdiff(names(columns), schema$names)
  if (length(missing) || length(unknown)) {
    invalid_input(sprintf("the inputs must be named %s: missing %s, unknown %s",
                          quote_names(schema$names),
                          if (length(missing)) quote_names(missing) else "none",
                          if (length(unknown)) quote_names(unknown) else "none"),
                  list(missing = I(missing), unknown = I(unknown)))
  }
  lengths <- vapply(schema$names, function(n) length(columns[[n]]), 1L)
  if (length(unique(lengths)) != 1 || lengths[1] == 0) {
    invalid_input("every input must hold the same, non-zero number of values",
                  list(lengths = as.list(lengths)))
  }
  to_frame(schema, lapply(schema$names, function(n) as.list(columns[[n]])))
}

scalar_ok <- function(v) !is.list(v) && length(v) == 1

# One column of JSON values (a list) -> an R vector of the input's type, or the error for the
# first value that does not fit.
convert_column <- function(schema, j, values) {
  type <- schema$types[j]
  n <- length(values)
  is_null <- vapply(values, is.null, TRUE)
  scalar <- vapply(values, scalar_ok, TRUE)
  if (type %in% c("double", "float")) {
    ok <- is_null | (scalar & vapply(values, function(v) is.numeric(v) || is.logical(v), TRUE))
    if (isTRUE(schema$refuse_missing) && any(is_null & ok)) {
      i <- which(is_null)[1]
      if (all(ok[seq_len(i)])) missing_value(schema, i - 1L, j)
    }
    if (all(ok)) {
      out <- rep(NA_real_, n)
      out[!is_null] <- as.numeric(unlist(values[!is_null]))
      return(out)
    }
  } else if (type %in% c("long", "integer")) {
    bound <- if (type == "long") 2^63 else 2^31
    ok <- scalar & vapply(values, function(v) {
      (is.logical(v) && !is.na(v)) ||
        (is.numeric(v) && is.finite(v) && v == floor(v) && v >= -bound && v < bound)
    }, TRUE)
    if (all(ok)) {
      numbers <- as.numeric(unlist(values))
      return(if (type == "integer") as.integer(numbers) else numbers)
    }
  } else if (type == "boolean") {
    ok <- scalar & vapply(values, function(v) is.logical(v) && !is.na(v), TRUE)
    if (all(ok)) return(as.logical(unlist(values)))
  } else {
    ok <- is_null | (scalar & vapply(values, is.character, TRUE))
    levels <- schema$levels[[j]]
    if (type == "category" && all(ok)) {
      ok <- is_null | vapply(values, function(v) is.null(v) || v %in% levels, TRUE)
    }
    if (all(ok)) {
      out <- rep(NA_character_, n)
      out[!is_null] <- as.character(unlist(values[!is_null]))
      return(if (type == "category") factor(out, levels = levels) else out)
    }
  }
  i <- which(!ok)[1]
  bad_value(schema, i - 1L, j, values[[i]])
}

# A null number for a model that does not take missing values (model.R: accepts_missing).
missing_value <- function(schema, i, j) {
  name <- schema$names[j]
  invalid_input(sprintf(paste0(
    "row %d, input '%s': a missing value (null), and this model does not accept missing ",
    "values: send a number, or publish a model that fills them in (in R, impute before ",
    "fitting or use a model that takes NA, such as rpart)"), i, name),
    list(row = i, column = name, got = NULL))
}

bad_value <- function(schema, i, j, value) {
  name <- schema$names[j]
  type <- schema$types[j]
  if (type == "category" && is.character(value) && scalar_ok(value)) {
    expected <- paste("one of the levels", quote_names(schema$levels[[j]]))
  } else if (is.null(value)) {
    expected <- sprintf("%s (%s; null is not allowed here)", EXPECTED[[type]], type)
  } else {
    expected <- sprintf("%s (%s)", EXPECTED[[type]], type)
  }
  invalid_input(sprintf("row %d, input '%s': expected %s, got %s %s",
                        i, name, expected, json_type(value), show_value(value)),
                list(row = i, column = name, expected = type, got = json_type(value)))
}

to_frame <- function(schema, columns) {
  converted <- lapply(seq_len(schema$width), function(j) convert_column(schema, j, columns[[j]]))
  names(converted) <- schema$names
  # the columns are already typed and of one length: no as.data.frame() (10x slower) needed
  structure(converted, class = "data.frame", row.names = c(NA, -length(converted[[1]])))
}

# Without a signature: records or rows as they come, the model judges them.
untyped_frame <- function(body) {
  instances <- if (is_record(body)) body$instances else NULL
  if (!is_row(instances) || length(instances) == 0) {
    invalid_input('send {"instances": [{...}, ...]} (records) or {"instances": [[...], ...]} (rows)',
                  list(field = "instances"))
  }
  frame <- tryCatch(jsonlite::fromJSON(to_json(instances)), error = function(e) e)
  if (inherits(frame, "error")) invalid_input(conditionMessage(frame), list(field = "instances"))
  as.data.frame(frame)
}
