*** Test Cases ***
Cart Can Be Opened
    Log    cart opened

Checkout Completes
    Should Be Equal    checkout    payment-declined    msg=checkout failed: payment declined
