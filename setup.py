"""Adversarially robust MNIST on TFX: ingestion, adversarial Trainer, robustness gate."""
import setuptools

setuptools.setup(
    name='mnist-adv-tfx',
    version='0.1.0',
    description='TFX pipeline that trains adversarially regularized MNIST models '
                'and pushes only the robust ones.',
    python_requires='>=3.9,<3.11',
    packages=setuptools.find_packages(include=['pipeline*', 'components*', 'kubeflow*']),
    package_data={'pipeline': ['schema/*.pbtxt']},
    # Ranges, not pins: requirements.lock pins the exact tested stack.
    install_requires=[
        'tfx[kfp]==1.16.0',
        'tensorflow>=2.16,<2.17',
        'tf-keras>=2.16,<2.17',
        'apache-beam[dill]>=2.59',
        'matplotlib>=3.5',
    ],
    extras_require={'test': ['pytest']},
)
