*** Test Cases ***
Report Generation Finishes
    Sleep    60s    the report takes far longer than the job's timeout
