"""Weekly sales KPI reports on Airflow: sync, the six notebooks, then the HTML reports and the email.

Copy this file into the DAG folder of an Airflow 2.4+ installation that has the papermill
provider (``pip install apache-airflow-providers-papermill``) and kpi-report installed in
``KPI_HOME/.venv``. The secrets (AMOCRM_*, SMTP_*) come from the worker's environment or
from an Airflow connection exported as environment variables; never put them in
``parameters``: papermill writes parameters into the executed notebooks.

Each run covers the ISO week before its logical date, so clearing an old run in the UI
rebuilds that very week with "now" pinned to the run's Monday morning. The papermill tasks
give a log, a retry and an executed notebook per report in Airflow (under
``KPI_HOME/airflow/<week>/``). The last task renders the reports (executing the notebooks
once more, as it builds the HTML pages, the charts, summary.json and the index together)
and sends the email. It runs even when a notebook task failed, and the email then names
the failed report in its subject. A week already emailed is not sent again: to resend
one, run ``kpi-report send --week 2026-W47 --force`` on the worker.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
import yaml
from airflow import DAG
from airflow.operators.bash import BashOperator
from airflow.providers.papermill.operators.papermill import PapermillOperator
from airflow.utils.trigger_rule import TriggerRule

KPI_HOME = "/opt/kpi-report"
PARAMS_FILE = "/etc/kpi-report/params.yaml"
TIMEZONE = "Europe/Moscow"
KERNEL = "python3"  # a Jupyter kernel whose Python has kpi-report installed
# The report notebooks; the managers' cards (07_manager_card, one run per manager) are rendered by
# the last task's 'kpi-report run'.
NOTEBOOKS = (
    "01_customer_satisfaction", "02_cost_of_service", "03_first_call_quality",
    "04_average_check", "05_manager_productivity", "06_smart_audit",
)
# The run's week and its pinned "now", from the logical interval (Monday to Monday).
WEEK = "{{ data_interval_start.in_timezone('%s').strftime('%%G-W%%V') }}" % TIMEZONE
AS_OF = "{{ data_interval_end.in_timezone('%s').isoformat() }}" % TIMEZONE
KPI = f"{KPI_HOME}/.venv/bin/kpi-report"


def read_params(path: str = PARAMS_FILE) -> dict:
    """The notebook parameters of the params file that ``kpi-report run`` reads too."""
    try:
        with open(path, encoding="utf-8") as fh:
            return yaml.safe_load(fh) or {}
    except FileNotFoundError:
        return {}


with DAG(
    dag_id="kpi_report_weekly",
    description="amoCRM sales KPIs: sync, notebooks, HTML reports, email to management",
    schedule="0 7 * * 1",
    start_date=pendulum.datetime(2026, 1, 5, 7, tz=TIMEZONE),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 1, "retry_delay": timedelta(minutes=10)},
    tags=["kpi-report"],
) as dag:
    sync = BashOperator(
        task_id="sync",
        bash_command=f"{KPI} sync",
        cwd=KPI_HOME,
        append_env=True,
    )
    notebooks = [
        PapermillOperator(
            task_id=f"notebook_{name}",
            input_nb=f"{KPI_HOME}/notebooks/{name}.ipynb",
            output_nb=f"{KPI_HOME}/airflow/{WEEK}/{name}.ipynb",
            kernel_name=KERNEL,
            parameters={**read_params(), "week": WEEK, "as_of": AS_OF, "email": {}},
            execution_timeout=timedelta(minutes=15),
        )
        for name in NOTEBOOKS
    ]
    report_and_email = BashOperator(
        task_id="report_and_email",
        bash_command=f"{KPI} run --week {WEEK} --as-of {AS_OF} --params {PARAMS_FILE} --email",
        cwd=KPI_HOME,
        append_env=True,
        trigger_rule=TriggerRule.ALL_DONE,
        retries=0,
    )
    sync >> notebooks >> report_and_email
