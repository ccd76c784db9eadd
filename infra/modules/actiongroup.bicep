// The default action group: e-mail to the address in POOLSYNC_ALERT_EMAIL. Deployed only when no existing action
// group is given (POOLSYNC_ACTION_GROUP_ID), so a guard refusal or a stopped audit always reaches someone.

param name string
param tags object

@minLength(3)
@description('Address that receives poolsync alerts (POOLSYNC_ALERT_EMAIL). Required when POOLSYNC_ACTION_GROUP_ID is empty.')
param email string

resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = {
  name: name
  location: 'global'
  tags: tags
  properties: {
    // Shown as the sender of SMS/voice; at most 12 characters.
    groupShortName: 'poolsync'
    enabled: true
    emailReceivers: [
      {
        name: 'poolsync-oncall'
        emailAddress: email
        useCommonAlertSchema: true
      }
    ]
  }
}

output id string = actionGroup.id
