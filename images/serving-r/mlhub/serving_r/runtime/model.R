# The loaded bundle: manifest, model object, compiled input schema and a safe predict call.
#
# load_served() never stops: a broken bundle (missing R packages, a corrupt RDS, a model that
# cannot predict its own example) gives a model that is not ready and carries the reason, so
# the server stays up and /readyz answers 503 with it, as in the Python runtime.

MANIFEST <- "mlhub.yaml"

read_manifest <- function(bundle) {
  path <- file.path(bundle, MANIFEST)
  if (!file.exists(path)) {
    fail(400L, "invalid_bundle", sprintf("not a model bundle: %s is missing", MANIFEST),
         list(field = MANIFEST))
  }
  manifest <- yaml::read_yaml(path)
  if (!identical(manifest$runtime, "r")) {
    fail(400L, "invalid_bundle", sprintf(
      "runtime '%s' is not served by the R runtime (it serves runtime 'r')",
      manifest$runtime %||% "missing"), list(field = "runtime"))
  }
  manifest
}

# The R packages the bundle needs that this R installation lacks, as "name (version)".
missing_packages <- function(manifest) {
  wanted <- manifest$r_packages %||% list()
  missing <- character(0)
  for (pkg in wanted) {
    if (!requireNamespace(pkg$name, quietly = TRUE)) {
      missing <- c(missing, sprintf("%s (%s)", pkg$name, pkg$version %||% "any version"))
    }
  }
  missing
}

# The bundle's own content digest is computed by the publisher; the runtime reports what it
# was given (MLHUB_MODEL_VERSION) or the digest stored beside the bundle by the tests.
load_served <- function(bundle, version = NULL) {
  started <- proc.time()[["elapsed"]]
  served <- new.env(parent = emptyenv())
  served$bundle <- bundle
  served$version <- version
  served$manifest <- list()
  served$ready <- FALSE
  served$error <- NULL
  served$schema <- NULL
  result <- tryCatch({
    manifest <- read_manifest(bundle)
    served$manifest <- manifest
    served$schema <- compile_schema(manifest$signature)
    served$predict_args <- manifest$predict_args %||% list()
    missing <- missing_packages(manifest)
    if (length(missing)) {
      fail(400L, "invalid_bundle", sprintf(paste0(
        "the model needs R packages this serving runtime lacks: %s; install them where the ",
        "model is served (Debian: apt-get install r-cran-<name>) or fit the model with ",
        "packages the runtime has"), paste(missing, collapse = ", ")),
        list(field = "r_packages", missing = I(sub(" .*", "", missing))))
    }
    model_file <- file.path(bundle, manifest$model_file)
    served$model <- tryCatch(readRDS(model_file), error = function(e) {
      fail(400L, "invalid_bundle", sprintf(
        "%s could not be loaded (%s); is it a model saved by mlhub::publish?",
        manifest$model_file, conditionMessage(e)), list(field = "model_file"))
    })
    classes <- served$model$classes  # a classifier's labels (randomForest, ...)
    served$classes <- if (is.character(classes)) I(classes) else NULL
    served$ready <- TRUE
    # The bundle's own example through the request path: a model that cannot predict it is
    # not ready (with the model's reason), as in the Python runtime.
    tryCatch({
      predict_example(served)
      check_parity(served)
    }, error = function(e) {
      served$ready <- FALSE
      stop(e)
    })
    if (!is.null(served$schema)) served$schema$refuse_missing <- !accepts_missing(served)
    NULL
  }, error = function(e) e)
  if (!is.null(result)) {
    served$error <- conditionMessage(result)
    message(sprintf("model bundle %s cannot be served: %s", bundle, served$error))
  }
  served$name <- served$manifest$name %||% "model"
  served$load_seconds <- proc.time()[["elapsed"]] - started
  served
}

require_ready <- function(served) {
  if (!served$ready) {
    fail(503L, "not_ready", paste("the model is not loaded:", served$error),
         list(bundle = served$bundle, reason = served$error))
  }
}

# Model output -> a JSON-ready vector (factors as their labels) or a list of rows.
as_predictions <- function(result) {
  if (is.factor(result)) return(as.character(result))
  if (is.data.frame(result)) return(result)
  if (is.matrix(result)) return(unname(result))
  if (is.list(result)) {
    fail(500L, "internal_error", paste(
      "the model's predict() returned a list, which cannot be written as predictions;",
      "make it return a vector, a factor, a matrix or a data.frame"), list(field = "predictions"))
  }
  unname(as.vector(result))
}

predict_frame <- function(served, frame, timeout = 0) {
  if (timeout > 0) {
    setTimeLimit(elapsed = timeout, transient = TRUE)
    on.exit(setTimeLimit(elapsed = Inf), add = TRUE)
  }
  result <- tryCatch(
    do.call(stats::predict, c(list(served$model, newdata = frame), served$predict_args)),
    error = function(e) {
      if (grepl("elapsed time limit", conditionMessage(e))) {
        fail(504L, "timeout", sprintf(
          "the prediction took longer than %d s (MLHUB_REQUEST_TIMEOUT): send fewer rows", timeout),
          list(limit = timeout))
      }
      fail(422L, "prediction_failed", sprintf(
        "the model could not predict on this input: %s", conditionMessage(e)),
        list(exception = class(e)[1]))
    })
  if (NROW(result) != nrow(frame)) {
    fail(422L, "prediction_failed", sprintf(
      "the model returned %d predictions for %d rows", NROW(result), nrow(frame)),
      list(rows = nrow(frame), predictions = NROW(result)))
  }
  as_predictions(result)
}

# The parity check (mlhub.bundle.parity, the same rules): the rows the notebook's model answered
# (the example's and a validation sample), through the request path; answers that differ beyond
# the tolerance keep the model not ready, naming the rows and the package versions that differ
# from the notebook's, so the publish is refused and the version before keeps serving.
check_parity <- function(served) {
  entry <- served$manifest$parity
  if (is.null(entry)) return(invisible(NULL))
  record <- jsonlite::read_json(file.path(served$bundle, entry$file), simplifyVector = FALSE)
  rows <- record$instances
  answers <- answer_json(predict_frame(served, from_instances(served$schema, rows)))
  notebook <- record$predictions
  rtol <- as.numeric(entry$rtol)
  atol <- as.numeric(entry$atol)
  differ <- if (length(answers) != length(notebook)) seq_along(notebook) else
    which(!vapply(seq_along(notebook), function(i) {
      same_answer(notebook[[i]], answers[[i]], rtol, atol)
    }, TRUE))
  if (!length(differ)) return(invisible(NULL))
  shown <- vapply(utils::head(differ, 5L), function(i) sprintf(
    "row %d: notebook %s, served %s (input %s)", i - 1L, to_json(notebook[[i]]),
    if (i <= length(answers)) to_json(answers[[i]]) else "nothing", to_json(rows[[i]])), "")
  drift <- package_drift(served$manifest)
  fail(503L, "parity_failed", sprintf(paste0(
    "its answers differ from the notebook's on %d of %d rows beyond the tolerance (rtol %s, ",
    "atol %s): %s; %s. Serve it where the notebook's versions are installed, or publish ",
    "again with a tolerance that accepts the difference"),
    length(differ), length(notebook), format(rtol), format(atol), paste(shown, collapse = "; "),
    if (length(drift)) paste("likely cause:", paste(drift, collapse = ", "))
    else "the package versions match, so look for randomness or state in predict()"),
    list(rows = length(notebook), differ = length(differ), versions = I(drift)))
}

# Predictions as JSON values, as mlhub::publish recorded the notebook's (vectors stay arrays).
answer_json <- function(predictions) {
  jsonlite::fromJSON(jsonlite::toJSON(predictions, dataframe = "rows", na = "null", digits = NA),
                     simplifyVector = FALSE)
}

same_answer <- function(a, b, rtol, atol) {
  if (is.null(a) || is.null(b)) return(is.null(a) && is.null(b))
  if (is.logical(a) || is.logical(b)) return(identical(a, b))
  if (is.numeric(a) && is.numeric(b)) return(!is.na(b) && abs(b - a) <= atol + rtol * abs(a))
  if (is.list(a) && is.list(b)) {
    return(length(a) == length(b) && identical(names(a), names(b)) &&
             all(vapply(seq_along(a), function(i) same_answer(a[[i]], b[[i]], rtol, atol), TRUE)))
  }
  identical(a, b)
}

# The notebook's R and package versions that differ here, as phrases.
package_drift <- function(manifest) {
  drift <- character(0)
  for (pkg in manifest$r_packages %||% list()) {
    here <- tryCatch(as.character(utils::packageVersion(pkg$name)), error = function(e) NA)
    if (!identical(here, pkg$version)) {
      drift <- c(drift, sprintf("%s %s in the notebook, %s here", pkg$name, pkg$version,
                                if (is.na(here)) "not installed" else here))
    }
  }
  if (!is.null(manifest$r_version) && manifest$r_version != as.character(getRversion())) {
    drift <- c(drift, sprintf("R %s in the notebook, %s here", manifest$r_version, getRversion()))
  }
  drift
}

# Whether the model takes missing numbers (NA), asked once at load as the Python runtime asks
# scikit-learn's tags: the example's first row with every number missing. A model that fails on
# it (randomForest) or answers NA (lm) does not, so a request with a null number gets a 400
# naming it instead of a 422 from deep in the model or, worse, a silent NA prediction. Models
# that handle NA themselves (rpart, gbm, xgboost) answer a value and take nulls as they are.
accepts_missing <- function(served) {
  numbers <- which(served$schema$types %in% c("double", "float"))
  example <- served$manifest$example
  if (!length(numbers) || is.null(example) || length(example) == 0) return(TRUE)
  frame <- from_instances(served$schema, jsonlite::parse_json(to_json(example))[1])
  frame[1, numbers] <- NA
  answer <- tryCatch(
    suppressWarnings(do.call(stats::predict,
                             c(list(served$model, newdata = frame), served$predict_args))),
    error = function(e) NULL)
  !is.null(answer) && NROW(answer) == 1 && !anyNA(answer)
}

# The bundle's own example through the request path (validation included): check uses it to
# refuse a bundle before deployment.
predict_example <- function(served) {
  require_ready(served)
  example <- served$manifest$example
  if (is.null(example) || length(example) == 0) return(NULL)
  frame <- tryCatch(
    {
      example <- jsonlite::parse_json(to_json(example))  # YAML made vectors of some rows
      if (is.null(served$schema)) untyped_frame(list(instances = example))
      else from_instances(served$schema, example)
    },
    mlhub_error = function(e) {
      fail(400L, "invalid_input",
           paste("the bundle's own example does not match its signature:", e$message), e$detail)
    })
  predict_frame(served, frame)
}

served_metadata <- function(served, owner = NULL) {
  m <- served$manifest
  list(
    name = served$name, owner = owner, version = served$version, ready = served$ready,
    runtime = "r", flavor = m$flavor, model_class = m$model_class,
    predict_method = "predict", description = m$description %||% "",
    signature = m$signature, example = m$example,
    requirements = I(as.character(unlist(m$requirements))),
    r_version = m$r_version, r_packages = m$r_packages, created = m$created,
    classes = served$classes, has_proba = FALSE
  )
}
