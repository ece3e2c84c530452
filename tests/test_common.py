"""scikit-learn's estimator checks, run on the default-constructed estimators."""

from sklearn.utils.estimator_checks import parametrize_with_checks

from sklearn_mach import CountMinLabelHasher, MACHClassifier


@parametrize_with_checks([CountMinLabelHasher(), MACHClassifier()])
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)
