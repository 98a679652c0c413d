#include "LobbyPresenceComponent.h"

#include "Engine/GameInstance.h"
#include "PresenceSubsystem.h"

void ULobbyPresenceComponent::BeginPlay()
{
    Super::BeginPlay();
    UPresenceSubsystem* Presence = GetWorld()->GetGameInstance()->GetSubsystem<UPresenceSubsystem>();
    Presence->OnUserPresenceChanged.AddDynamic(this, &ULobbyPresenceComponent::HandlePresenceChanged);

    // Every call answers success (or 0) and never throws; GetLastError() says why it failed.
    ConnectionId = Presence->Connect(PlayerId);
    if (ConnectionId == 0)
    {
        UE_LOG(LogTemp, Error, TEXT("Presence: %s"), *Presence->GetLastError());
        return;
    }
    FPresenceChannelState Lobby;
    if (Presence->WatchChannel(ConnectionId, LobbyId, Lobby))
    {
        for (const FPresenceUser& Member : Lobby.Members)
        {
            UE_LOG(LogTemp, Log, TEXT("%s is %s"), *Member.UserId, Member.bOnline ? TEXT("online") : TEXT("offline"));
        }
    }
}

void ULobbyPresenceComponent::EndPlay(const EEndPlayReason::Type Reason)
{
    if (UPresenceSubsystem* Presence = GetWorld()->GetGameInstance()->GetSubsystem<UPresenceSubsystem>())
    {
        Presence->OnUserPresenceChanged.RemoveDynamic(this, &ULobbyPresenceComponent::HandlePresenceChanged);
        if (ConnectionId != 0)
        {
            Presence->Disconnect(ConnectionId);
        }
    }
    Super::EndPlay(Reason);
}

void ULobbyPresenceComponent::HandlePresenceChanged(const FString& UserId, bool bOnline, const FString& Status, FDateTime LastActive)
{
    UE_LOG(LogTemp, Log, TEXT("%s is %s (%s), last active %s"), *UserId, bOnline ? TEXT("online") : TEXT("offline"), *Status,
        *LastActive.ToIso8601());
}
