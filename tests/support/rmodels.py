"""R models for the tests, fitted by a real R (``Rscript``) and bundled with
``mlhub.bundle.save_r_bundle``, as the notebook extension bundles what ``mlhub::publish`` sends.

``formula_bundle``: an ``lm`` fitted on exact data, so it predicts
``2*temp + pressure + code(line) + count`` (``code`` = 1, 2, 3 for the levels a, b, c).
``constant_bundle``: an intercept-only ``lm`` predicting ``value`` for every row (versions are
told apart by it), optionally listing extra R packages it claims to need.
``pid_bundle``: an ``lm`` whose one term is the process id of the R process predicting (its
formula's environment, saved with the model, holds the function), so an answer says which of
an instance's R processes gave it.
"""

import subprocess

from mlhub.bundle import save_r_bundle

LEVELS = ["a", "b", "c"]
FORMULA_SIGNATURE = {
    "kind": "dataframe",
    "inputs": [
        {"name": "temp", "type": "double"},
        {"name": "pressure", "type": "double"},
        {"name": "line", "type": "category", "levels": LEVELS},
        {"name": "count", "type": "integer"},
    ],
}
FIT_FORMULA = """
set.seed(7)
n <- 60
df <- data.frame(temp = rnorm(n), pressure = runif(n, -5, 5),
                 line = factor(sample(c("a", "b", "c"), n, TRUE), levels = c("a", "b", "c")),
                 count = sample(0:9, n, TRUE))
df$y <- 2 * df$temp + df$pressure + as.integer(df$line) + df$count
saveRDS(lm(y ~ temp + pressure + line + count, data = df), commandArgs(TRUE)[1])
"""
FIT_CONSTANT = """
args <- commandArgs(TRUE)
df <- data.frame(x = c(0, 1, 2), y = rep(as.numeric(args[2]), 3))
saveRDS(lm(y ~ 1, data = df), args[1])
"""
FIT_PID = """
model <- local({
  pid <- function(x) rep(as.numeric(Sys.getpid()), length(x))
  df <- data.frame(x = c(0, 1, 2))
  df$y <- pid(df$x)
  lm(y ~ 0 + pid(x), data = df)
})
saveRDS(model, commandArgs(TRUE)[1])
"""


def rscript(code, *args):
    """Run R code with ``commandArgs(TRUE)`` = ``args``; return what it printed."""
    done = subprocess.run(
        ["Rscript", "-e", code, *map(str, args)], capture_output=True, text=True, timeout=120
    )
    if done.returncode != 0:
        raise AssertionError(f"R failed: {done.stderr[-2000:]}")
    return done.stdout


def r_version():
    return rscript("cat(format(getRversion()))")


def _bundle(path, code, args, name, signature, example, packages=()):
    rds = path.with_name(path.name + ".rds")
    rscript(code, rds, *args)
    version = r_version()
    save_r_bundle(
        rds.read_bytes(),
        path,
        name=name,
        r_version=version,
        r_packages=[{"name": "stats", "version": version}, *packages],
        signature=signature,
        example=example,
        model_class="lm",
    )
    return path


def formula_bundle(path, name="formula", example=None):
    example = example or [{"temp": 0.5, "pressure": 1.25, "line": "a", "count": 2}]
    return _bundle(path, FIT_FORMULA, (), name, FORMULA_SIGNATURE, example)


def constant_bundle(path, value, name="const-r", packages=()):
    signature = {"kind": "dataframe", "inputs": [{"name": "x", "type": "double"}]}
    return _bundle(path, FIT_CONSTANT, (value,), name, signature, [{"x": 0.0}], packages)


def pid_bundle(path, name="pid-r"):
    """Predicts the process id of the R process that answers (a float: round it)."""
    signature = {"kind": "dataframe", "inputs": [{"name": "x", "type": "double"}]}
    return _bundle(path, FIT_PID, (), name, signature, [{"x": 0.0}])
