# Open Inference Protocol (v2) tensors in and out, mapped onto the same schema as /v1, as in
# the Python runtime (mlhub.serving.v2): one 2-D tensor [rows, features] (any name), or one
# 1-D tensor per input named after the signature's inputs ([rows] or [rows, 1]).

DATATYPES <- c("BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32",
               "INT64", "FP16", "FP32", "FP64", "BYTES")
SIGNATURE_DATATYPE <- c(double = "FP64", float = "FP32", long = "INT64", integer = "INT32",
                        boolean = "BOOL", string = "BYTES", category = "BYTES")

flatten <- function(data) {
  if (!is.list(data)) return(list(data))
  if (!length(data)) return(list())
  do.call(c, lapply(data, flatten))
}

parse_tensor <- function(i, spec) {
  if (!is_record(spec)) {
    invalid_input(sprintf("inputs[%d] must be an object with name, shape, datatype and data", i))
  }
  name <- spec$name
  if (!is.character(name) || !nzchar(name)) {
    invalid_input(sprintf("inputs[%d] needs a 'name'", i), list(input = i, field = "name"))
  }
  shape <- spec$shape
  if (!is_row(shape) || !length(shape) ||
      !all(vapply(shape, function(d) is.numeric(d) && length(d) == 1 && d >= 0 && d == floor(d), TRUE))) {
    invalid_input(sprintf(
      "input '%s': 'shape' must be a list of sizes, e.g. [2, 4] for 2 rows of 4", name),
      list(input = name, field = "shape"))
  }
  shape <- as.integer(unlist(shape))
  if (!is.character(spec$datatype) || !(spec$datatype %in% DATATYPES)) {
    invalid_input(sprintf("input '%s': datatype '%s' is not one of %s", name,
                          spec$datatype %||% "null", paste(DATATYPES, collapse = ", ")),
                  list(input = name, field = "datatype"))
  }
  if (!is.list(spec$data) || !is.null(names(spec$data))) {
    invalid_input(sprintf(
      "input '%s': 'data' must be a list (flat or nested) of the tensor's values", name),
      list(input = name, field = "data"))
  }
  values <- flatten(spec$data)
  if (length(values) != prod(shape)) {
    invalid_input(sprintf("input '%s': shape [%s] needs %d values, data has %d", name,
                          paste(shape, collapse = ", "), prod(shape), length(values)),
                  list(input = name, shape = I(shape), got = length(values)))
  }
  list(name = name, shape = shape, values = values)
}

parse_infer <- function(schema, body) {
  if (!is_record(body) || !is_row(body$inputs) || !length(body$inputs)) {
    invalid_input('an infer request needs "inputs": [{"name", "shape", "datatype", "data"}, ...]',
                  list(field = "inputs"))
  }
  tensors <- lapply(seq_along(body$inputs), function(i) parse_tensor(i - 1L, body$inputs[[i]]))
  if (length(tensors) == 1 && length(tensors[[1]]$shape) == 2) {
    t <- tensors[[1]]
    width <- t$shape[2]
    rows <- lapply(seq_len(t$shape[1]), function(r) t$values[(r - 1) * width + seq_len(width)])
    frame <- from_rows(schema, rows)
  } else {
    for (t in tensors) {
      if (length(t$shape) > 2 || (length(t$shape) == 2 && t$shape[2] != 1)) {
        invalid_input(sprintf(paste0(
          "input '%s' has shape [%s]: send one tensor [rows, features], ",
          "or one tensor [rows] per input"), t$name, paste(t$shape, collapse = ", ")),
          list(input = t$name, shape = I(t$shape)))
      }
    }
    columns <- lapply(tensors, function(t) t$values)
    names(columns) <- vapply(tensors, function(t) t$name, "")
    frame <- from_columns(schema, columns)
  }
  outputs <- body$outputs
  if (!is.null(outputs)) {
    ok <- is_row(outputs) && all(vapply(outputs, function(o) is_record(o) && identical(o$name, "predict"), TRUE))
    if (!ok) {
      invalid_input(paste0('"outputs" must list objects named predict (this R model has no ',
                           "predict_proba)"), list(field = "outputs", allowed = I("predict")))
    }
  }
  list(frame = frame, id = body$id)
}

datatype_of <- function(values) {
  if (is.logical(values)) return("BOOL")
  if (is.integer(values)) return("INT32")
  if (is.numeric(values)) return("FP64")
  "BYTES"
}

output_tensor <- function(predictions) {
  if (is.data.frame(predictions) || is.matrix(predictions)) {
    m <- as.matrix(predictions)
    return(list(name = "predict", shape = dim(m), datatype = datatype_of(as.vector(m)),
                data = I(as.vector(t(m)))))
  }
  list(name = "predict", shape = I(length(predictions)), datatype = datatype_of(predictions),
       data = I(predictions))
}

v2_model_metadata <- function(served) {
  schema <- served$schema
  inputs <- if (is.null(schema)) list() else lapply(seq_len(schema$width), function(j) {
    list(name = schema$names[j], datatype = SIGNATURE_DATATYPE[[schema$types[j]]], shape = I(-1L))
  })
  datatype <- if (!is.null(served$classes)) "BYTES" else "FP64"
  list(name = served$name, versions = I(as.character(served$version)),
       platform = paste0("mlhub-r-", served$manifest$flavor %||% "rds"),
       inputs = inputs,
       outputs = list(list(name = "predict", datatype = datatype, shape = I(-1L))))
}
