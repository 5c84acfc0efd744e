# Unit tests of the helper's pure logic (no server): names, models, examples, packages.

test_that("a bad name is refused with the rule", {
  expect_error(publish(lm(dist ~ speed, cars), "Bad_Name"), "not valid: use 1-63 lowercase")
  expect_error(publish(lm(dist ~ speed, cars), c("a", "b")), "not valid")
})

test_that("something without predict() is not a model", {
  expect_error(publish(list(a = 1), "m"), "a list is not a model")
  expect_error(publish(NULL, "m"), "a NULL is not a model")
})

test_that("the example must be a non-empty data.frame of supported columns", {
  m <- lm(dist ~ speed, cars)
  expect_error(publish(m, "m", example = 1:3), "must be a data.frame")
  expect_error(publish(m, "m", example = cars[0, ]), "the example is empty")
  odd <- data.frame(speed = 1, when = Sys.Date())
  expect_error(describe_example(odd), "column 'when' of the example is a Date")
})

test_that("an example the model cannot predict is refused with the model's reason", {
  m <- lm(dist ~ speed, cars)
  expect_error(publish(m, "m", example = data.frame(velocity = 1)),
               "failed to predict on the example .*speed")
})

test_that("the signature records types and factor levels in column order", {
  df <- data.frame(x = c(1.5, 2), n = c(1L, 2L), ok = c(TRUE, FALSE), s = c("a", "b"),
                   f = factor(c("lo", "hi"), levels = c("lo", "hi", "mid")))
  sig <- describe_example(df)
  expect_equal(vapply(sig$inputs, function(i) i$name, ""), c("x", "n", "ok", "s", "f"))
  expect_equal(vapply(sig$inputs, function(i) i$type, ""),
               c("double", "integer", "boolean", "string", "category"))
  expect_equal(as.character(sig$inputs[[5]]$levels), c("lo", "hi", "mid"))
  records <- example_records(df)
  expect_equal(records[[1]], list(x = 1.5, n = 1L, ok = TRUE, s = "a", f = "lo"))
})

test_that("the packages are where the model's predict method comes from", {
  pkgs <- model_packages(lm(dist ~ speed, cars))
  expect_equal(pkgs[[1]]$name, "stats")
  expect_equal(pkgs[[1]]$version, as.character(packageVersion("stats")))
  skip_if_not_installed("randomForest")
  rf <- randomForest::randomForest(Species ~ ., iris, ntree = 5)
  expect_true("randomForest" %in% vapply(model_packages(rf), function(p) p$name, ""))
})

test_that("outside a notebook server the helper says so", {
  withr_env <- Sys.getenv(c("JUPYTERHUB_SERVICE_URL", "JUPYTERHUB_API_TOKEN"), unset = NA)
  Sys.unsetenv(c("JUPYTERHUB_SERVICE_URL", "JUPYTERHUB_API_TOKEN"))
  on.exit(for (k in names(withr_env)) if (!is.na(withr_env[[k]])) do.call(Sys.setenv, as.list(withr_env[k])))
  expect_error(publish(lm(dist ~ speed, cars), "m", example = head(cars)),
               "runs in a notebook started from mlhub")
})

test_that("the candidates are the models and the data frames, as JSON", {
  env <- new.env()
  expect_equal(jsonlite::fromJSON(publish_candidates(env), simplifyVector = FALSE),
               list(models = list(), examples = list()))
  env$fit <- lm(dist ~ speed, cars)
  env$`odd name` <- glm(dist ~ speed, data = cars)
  env$cars_df <- cars
  env$empty <- cars[0, ]
  env$n <- 3
  found <- jsonlite::fromJSON(publish_candidates(env), simplifyVector = FALSE)
  expect_equal(vapply(found$models, function(m) m$name, ""), c("fit", "odd name"))
  expect_equal(found$models[[2]]$class, "glm")
  expect_equal(found$examples, list(list(name = "cars_df", rows = 50L, columns = 2L)))
})

test_that("the parity record holds the example's and a fixed validation sample's answers", {
  m <- lm(dist ~ speed, cars)
  big <- do.call(rbind, rep(list(cars), 30))  # 1,500 rows: a sample of 1,000 is kept
  set.seed(1)
  before <- .Random.seed
  record <- parity_record(m, cars, big, list(), NULL)
  expect_identical(.Random.seed, before)  # the session's random numbers are untouched
  expect_length(record$instances, 5 + 1000)
  expect_equal(record$instances[[2]], list(speed = 4, dist = 10))
  expect_equal(unlist(record$predictions[1:5]), unname(predict(m, head(cars, 5))))
  expect_identical(parity_record(m, cars, big, list(), NULL), record)
  expect_equal(record[c("rtol", "atol")], list(rtol = 1e-6, atol = 1e-9))
  expect_equal(parity_record(m, cars, NULL, list(), 0.01)$rtol, 0.01)
  expect_error(parity_record(m, cars, NULL, list(), list(rtol = -1)), "must be a number >= 0")
  expect_error(parity_record(m, cars, cars[, "speed", drop = FALSE], list(), NULL),
               "the example's columns \\(speed, dist\\)")
  expect_error(publish(m, "m", validate = cars), "validate needs an example too")
})

test_that("the inference log option becomes the publish query the publisher reads", {
  expect_equal(publish_query(2, TRUE), list(workers = 2L, inference_log = "on"))
  expect_equal(publish_query(NULL, 0.25), list(inference_log = "0.25"))
  expect_equal(publish_query(NULL, FALSE), list(inference_log = "off"))
  expect_equal(publish_query(NULL, NULL), list())
  expect_equal(publish_query(NULL, NULL, "staging"), list(alias = "staging"))
  expect_error(publish_query(NULL, "lots"), "share of requests")
})
