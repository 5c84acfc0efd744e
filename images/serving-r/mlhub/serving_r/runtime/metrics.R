# Prometheus metrics with the names and labels of the Python runtime (mlhub.serving.metrics):
# requests by route and status, a latency histogram by route, rows predicted, the inference
# log's sent and dropped rows, and gauges.
# One R process serves one request at a time, so plain counters in an environment suffice.

ROUTES <- c("/healthz", "/readyz", "/v1/metadata", "/v1/predict", "/v2/models/{name}",
            "/v2/models/{name}/ready", "/v2/models/{name}/infer", "/v2/health/live",
            "/v2/health/ready", "/v2", "/metrics", "/openapi.json", "other")
BUCKETS <- c(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

# With several plumber processes behind one endpoint (the serving-r image), each writes its
# counters to MLHUB_METRICS_DIR/<worker>.rds after every request (atomically, a few hundred
# bytes) and /metrics sums every worker's file, so a scrape sees the whole server whichever
# process answers it. Without the setting a process reports itself alone.
new_metrics <- function(dir = Sys.getenv("MLHUB_METRICS_DIR", ""),
                        worker = Sys.getenv("MLHUB_WORKER_ID", "1")) {
  m <- new.env(parent = emptyenv())
  m$dir <- if (nzchar(dir)) dir else NULL
  m$file <- if (nzchar(dir)) file.path(dir, paste0("worker-", worker, ".rds")) else NULL
  m$requests <- list()  # "route\tstatus" -> count
  m$buckets <- matrix(0, nrow = length(ROUTES), ncol = length(BUCKETS) + 1)
  m$sums <- numeric(length(ROUTES))
  m$rows <- 0
  m$info <- list()
  m$gauges <- list()
  m
}

observe <- function(m, route, status, seconds) {
  key <- paste(route, status, sep = "\t")
  m$requests[[key]] <- (m$requests[[key]] %||% 0) + 1
  r <- match(route, ROUTES)
  b <- findInterval(seconds, BUCKETS, left.open = TRUE) + 1
  m$buckets[r, b] <- m$buckets[r, b] + 1
  m$sums[r] <- m$sums[r] + seconds
}

add_rows <- function(m, rows) m$rows <- m$rows + rows

counters <- function(m) {
  log <- m$inference_log
  list(requests = m$requests, buckets = m$buckets, sums = m$sums, rows = m$rows,
       logged = if (is.null(log)) 0 else log$sent, log_dropped = if (is.null(log)) 0 else log$dropped)
}

# Write this process's counters for the others to read (no-op without MLHUB_METRICS_DIR).
persist <- function(m) {
  if (is.null(m$file)) return(invisible())
  tmp <- paste0(m$file, ".tmp")
  saveRDS(counters(m), tmp, compress = FALSE)
  file.rename(tmp, m$file)
  invisible()
}

# This process's counters plus every other worker's last written ones.
totals <- function(m) {
  total <- counters(m)
  if (is.null(m$dir)) return(c(total, list(workers = 1L)))
  files <- setdiff(list.files(m$dir, pattern = "^worker-.*[.]rds$", full.names = TRUE), m$file)
  for (f in files) {
    other <- tryCatch(readRDS(f), error = function(e) NULL)
    if (is.null(other)) next
    for (key in names(other$requests)) {
      total$requests[[key]] <- (total$requests[[key]] %||% 0) + other$requests[[key]]
    }
    total$buckets <- total$buckets + other$buckets
    total$sums <- total$sums + other$sums
    total$rows <- total$rows + other$rows
    total$logged <- total$logged + (other$logged %||% 0)
    total$log_dropped <- total$log_dropped + (other$log_dropped %||% 0)
  }
  c(total, list(workers = length(files) + 1L))
}

prom_escape <- function(x) gsub("\n", "\\\\n", gsub('"', '\\\\"', gsub("\\\\", "\\\\\\\\", x)))

render_metrics <- function(m) {
  t <- totals(m)
  if (!is.null(m$gauges$mlhub_workers)) m$gauges$mlhub_workers$value <- t$workers
  out <- c("# HELP mlhub_requests_total HTTP requests answered, by route and status.",
           "# TYPE mlhub_requests_total counter")
  for (key in sort(names(t$requests))) {
    parts <- strsplit(key, "\t", fixed = TRUE)[[1]]
    out <- c(out, sprintf('mlhub_requests_total{route="%s",status="%s"} %d',
                          parts[1], parts[2], as.integer(t$requests[[key]])))
  }
  out <- c(out, "# HELP mlhub_request_duration_seconds Time from request to response, by route.",
           "# TYPE mlhub_request_duration_seconds histogram")
  les <- c(format(BUCKETS, scientific = FALSE, drop0trailing = TRUE, trim = TRUE), "+Inf")
  for (r in seq_along(ROUTES)) {
    counts <- t$buckets[r, ]
    if (sum(counts) == 0) next
    running <- cumsum(counts)
    out <- c(out, sprintf('mlhub_request_duration_seconds_bucket{route="%s",le="%s"} %d',
                          ROUTES[r], les, as.integer(running)),
             sprintf('mlhub_request_duration_seconds_sum{route="%s"} %s', ROUTES[r],
                     format(t$sums[r], digits = 15)),
             sprintf('mlhub_request_duration_seconds_count{route="%s"} %d', ROUTES[r],
                     as.integer(sum(counts))))
  }
  out <- c(out, "# HELP mlhub_predictions_total Rows predicted (one request may carry many rows).",
           "# TYPE mlhub_predictions_total counter",
           sprintf("mlhub_predictions_total %d", as.integer(t$rows)),
           "# HELP mlhub_inference_log_rows_total Rows the inference log sent to the publisher.",
           "# TYPE mlhub_inference_log_rows_total counter",
           sprintf("mlhub_inference_log_rows_total %d", as.integer(t$logged)),
           paste("# HELP mlhub_inference_log_dropped_total Sampled rows the inference log left",
                 "out (its buffer was full)."),
           "# TYPE mlhub_inference_log_dropped_total counter",
           sprintf("mlhub_inference_log_dropped_total %d", as.integer(t$log_dropped)))
  for (name in names(m$gauges)) {
    g <- m$gauges[[name]]
    out <- c(out, sprintf("# HELP %s %s", name, g$help), sprintf("# TYPE %s gauge", name),
             sprintf("%s %s", name, format(g$value, digits = 15)))
  }
  if (length(m$info)) {
    labels <- paste(sprintf('%s="%s"', names(m$info), prom_escape(unlist(m$info))), collapse = ",")
    out <- c(out, "# HELP mlhub_model_info The served model (always 1).",
             "# TYPE mlhub_model_info gauge", sprintf("mlhub_model_info{%s} 1", labels))
  }
  paste0(paste(out, collapse = "\n"), "\n")
}
