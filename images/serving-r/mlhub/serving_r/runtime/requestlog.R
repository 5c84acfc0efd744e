# One structured line per request outcome in the model's log: the R twin of
# mlhub.serving.requestlog (the same format, settings and rate rule), so a refused or failed
# call to an R model can be found and understood too:
#
#   request {"method":"POST","route":"/v1/predict","status":400,"ms":0.41,"code":"invalid_input",...}
#
# MLHUB_REQUEST_LOG says which outcomes are written (errors, the default; all; off), at most
# MLHUB_REQUEST_LOG_RATE lines a second per process; what is left out is counted in the next
# line ("dropped"). The route is its template, never a caller's path or body, and no credential
# is ever written.

REQUEST_LOG_MODES <- c("off", "errors", "all")
MAX_ERROR_CHARS <- 500L

new_request_log <- function(mode = "errors", rate = 20L, clock = function() as.numeric(Sys.time()),
                            write = function(line) message(line)) {
  if (!mode %in% REQUEST_LOG_MODES) {
    stop(sprintf("MLHUB_REQUEST_LOG=%s is not valid: use one of %s", mode,
                 paste(REQUEST_LOG_MODES, collapse = ", ")), call. = FALSE)
  }
  log <- new.env()
  log$mode <- mode
  log$rate <- as.integer(rate)
  log$clock <- clock
  log$write <- write
  log$second <- NA_real_
  log$written <- 0L
  log$dropped <- 0L
  log
}

# Record one answered request; `err` is the mlhub_error it answered with, if any.
log_outcome <- function(log, method, route, status, seconds, err = NULL) {
  if (log$mode == "off" || (log$mode == "errors" && status < 400L)) return(invisible(NULL))
  second <- floor(log$clock())
  if (!identical(second, log$second)) {
    log$second <- second
    log$written <- 0L
  }
  if (log$written >= log$rate) {
    log$dropped <- log$dropped + 1L
    return(invisible(NULL))
  }
  log$written <- log$written + 1L
  entry <- list(method = method, route = route, status = as.integer(status),
                ms = round(seconds * 1000, 2))
  if (!is.null(err)) {
    entry$code <- err$code
    entry$error <- substr(err$message, 1L, MAX_ERROR_CHARS)
  }
  if (log$dropped > 0L) {
    entry$dropped <- log$dropped
    log$dropped <- 0L
  }
  log$write(paste("request", to_json(entry)))
  invisible(NULL)
}
