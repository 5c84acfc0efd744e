# Typed errors of the serving contract and the one place they become JSON bodies.
#
# An error is an R condition of class "mlhub_error" carrying the HTTP status, a machine code
# and a detail list, mirroring mlhub.errors in Python: the body is always
# {"error": "<what was wrong and how to fix it>", "code": "<machine code>", "detail": {...}}.

mlhub_error <- function(status, code, message, detail = NULL) {
  structure(
    class = c("mlhub_error", "error", "condition"),
    list(message = message, call = NULL, status = as.integer(status), code = code, detail = detail)
  )
}

fail <- function(status, code, message, detail = NULL) {
  stop(mlhub_error(status, code, message, detail))
}

invalid_input <- function(message, detail = NULL) fail(400L, "invalid_input", message, detail)

# JSON with the conventions of the Python runtime: scalars unboxed, NA and NULL as null,
# numbers with full precision.
to_json <- function(x) {
  as.character(jsonlite::toJSON(x, auto_unbox = TRUE, null = "null", na = "null",
                                digits = NA, POSIXt = "ISO8601"))
}

# A detail list for JSON: NULL stays null, character(0) becomes [].
error_body <- function(err) {
  list(error = err$message, code = err$code, detail = err$detail)
}

# Any condition -> list(status, body); unexpected errors become a 500 that names them.
as_error <- function(cond) {
  if (inherits(cond, "mlhub_error")) return(cond)
  mlhub_error(
    500L, "internal_error",
    sprintf("the server failed on this request (%s); the model server's log has the details",
            conditionMessage(cond)),
    list(exception = class(cond)[1])
  )
}
