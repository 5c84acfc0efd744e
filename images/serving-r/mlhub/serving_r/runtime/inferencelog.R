# The inference log's R side, as the Python runtime's (mlhub.serving.inferencelog): a share of
# the predict requests (MLHUB_INFERENCE_LOG, 0 = off) is kept in this process's buffer after
# its answer is sent, with its rows, predictions, latency and status (a refusal with its
# error), and sent to the publisher (MLHUB_INFERENCE_LOG_URL, with the model's log token
# MLHUB_INFERENCE_LOG_TOKEN) every MLHUB_INFERENCE_LOG_FLUSH_SECONDS from plumber's event loop
# (later), between requests. The share is kept by credit, not by random draws: the model's own
# use of R's random numbers is left as it is. A full buffer (MLHUB_INFERENCE_LOG_BUFFER rows)
# drops and counts (mlhub_inference_log_dropped_total); a batch the publisher could not take goes
# back into the buffer if it fits, one it refused (4xx: over the model's rate) is dropped.

new_inference_log <- function(settings, version = settings$version, send = NULL,
                              clock = function() as.numeric(Sys.time())) {
  sample <- settings$inference_log_sample %||% 0
  if (!(sample > 0)) return(NULL)
  url <- settings$inference_log_url
  token <- Sys.getenv("MLHUB_INFERENCE_LOG_TOKEN", "")
  if (is.null(send) && (is.null(url) || !nzchar(token))) {
    message("MLHUB_INFERENCE_LOG is on but MLHUB_INFERENCE_LOG_URL or ",
            "MLHUB_INFERENCE_LOG_TOKEN is not set: no request is logged")
    return(NULL)
  }
  log <- new.env(parent = emptyenv())
  log$sample <- sample
  log$credit <- 0
  log$version <- version %||% ""
  log$max_rows <- settings$inference_log_buffer %||% 10000L
  log$flush_seconds <- settings$inference_log_flush_seconds %||% 2L
  log$entries <- list()
  log$rows <- 0L
  log$sent <- 0
  log$dropped <- 0
  log$failing <- FALSE
  log$clock <- clock
  log$send <- send %||% function(body) post_batch(url, token, body)
  log
}

post_batch <- function(url, token, body) {
  handle <- curl::new_handle(post = TRUE, postfields = body, timeout = 10, connecttimeout = 5)
  curl::handle_setheaders(handle, Authorization = paste("token", token),
                          `Content-Type` = "application/json")
  reply <- curl::curl_fetch_memory(url, handle = handle)
  if (reply$status_code >= 300) {
    err <- simpleError(sprintf("the publisher answered %d: %s", reply$status_code,
                               rawToChar(reply$content)))
    # refused as it is (4xx: over the model's rate): sending it again would be refused again
    if (reply$status_code < 500) class(err) <- c("mlhub_refused", class(err))
    stop(err)
  }
}

# One answered predict request (logged: list(frame, predictions), or NULL for a refusal).
record_inference <- function(log, status, seconds, logged, failed) {
  if (is.null(log)) return(invisible())
  log$credit <- log$credit + log$sample
  if (log$credit < 1) return(invisible())
  log$credit <- log$credit - 1
  rows <- if (is.null(logged)) 1L else max(nrow(logged$frame), 1L)
  if (log$rows + rows > log$max_rows) {
    log$dropped <- log$dropped + rows
    return(invisible())
  }
  log$entries[[length(log$entries) + 1L]] <- list(
    time = log$clock(), status = status, ms = round(seconds * 1000, 3),
    inputs = if (is.null(logged)) NULL else logged$frame,
    outputs = if (is.null(logged)) NULL else I(logged$predictions),
    error = if (is.null(failed)) NULL else failed$message)
  log$rows <- log$rows + rows
  invisible()
}

flush_inference_log <- function(log) {
  if (is.null(log) || !length(log$entries)) return(invisible())
  entries <- log$entries
  rows <- log$rows
  log$entries <- list()
  log$rows <- 0L
  body <- to_json(list(version = log$version, requests = entries))
  outcome <- tryCatch({
    log$send(body)
    NULL
  }, mlhub_refused = function(e) {
    message("inference log: the publisher refused a batch: ", conditionMessage(e))
    log$dropped <- log$dropped + rows
    FALSE
  }, error = function(e) conditionMessage(e))
  if (isFALSE(outcome)) return(invisible())
  if (is.null(outcome)) {
    if (log$failing) message("inference log: the publisher takes batches again")
    log$failing <- FALSE
    log$sent <- log$sent + rows
  } else {
    if (!log$failing) message("inference log: the publisher did not take a batch: ", outcome)
    log$failing <- TRUE
    if (log$rows + rows <= log$max_rows) {
      log$entries <- c(entries, log$entries)
      log$rows <- log$rows + rows
    } else {
      log$dropped <- log$dropped + rows
    }
  }
  invisible()
}

# Flush every flush_seconds on plumber's event loop, for as long as the process serves.
start_inference_log <- function(log) {
  if (is.null(log)) return(invisible())
  tick <- function() {
    flush_inference_log(log)
    later::later(tick, log$flush_seconds)
  }
  later::later(tick, log$flush_seconds)
  invisible()
}
